using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Relay.Linux.Interop;

namespace Relay.Linux.Namespaces;

/// <summary>
/// A dedicated OS thread that has entered one network namespace and runs work there.
/// <para>
/// setns(2) changes the calling thread only, and a socket (netlink, libnftables' context, UDP...)
/// belongs to the namespace of the thread that created it. Thread-pool threads and code across
/// <c>await</c> may run anywhere, so namespace work happens here: create handles on this thread;
/// once created they stay bound to the namespace whichever thread then uses them.
/// </para>
/// </summary>
public sealed class NetnsThread : IDisposable
{
    private readonly BlockingCollection<WorkItem> _queue = new();
    private readonly Thread _thread;
    private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _disposed;

    private NetnsThread(string path, string name)
    {
        Path = path;
        Name = name;
        _thread = new Thread(() => Run(path)) { IsBackground = true, Name = "netns " + name };
        _thread.Start();
        // Surface a failed setns (no such namespace, not root) to the caller, typed.
        _entered.Task.GetAwaiter().GetResult();
    }

    /// <summary>The namespace file this thread entered.</summary>
    public string Path { get; }

    /// <summary>The namespace's name (or its path when it has none).</summary>
    public string Name { get; }

    /// <summary>Starts a thread in the named namespace (<c>/run/netns/NAME</c>, as <c>ip netns</c> keeps them).</summary>
    public static NetnsThread Enter(string name) => new(System.IO.Path.Combine(Netns.RunDirectory, name), name);

    /// <summary>Starts a thread in the namespace at <paramref name="path"/> (for example <c>/proc/1/ns/net</c>).</summary>
    public static NetnsThread EnterPath(string path) => new(path, path);

    /// <summary>True when the caller is this thread.</summary>
    public bool IsCurrent => Thread.CurrentThread == _thread;

    /// <summary>Runs <paramref name="work"/> in the namespace and returns its result (or rethrows its exception).</summary>
    public T Invoke<T>(Func<T> work)
    {
        if (IsCurrent)
        {
            return work();
        }
        var item = new WorkItem(() => work());
        Enqueue(item);
        return (T)item.Completion.Task.GetAwaiter().GetResult()!;
    }

    /// <summary>Runs <paramref name="work"/> in the namespace.</summary>
    public void Invoke(Action work) => Invoke<object?>(() =>
    {
        work();
        return null;
    });

    /// <summary>Runs <paramref name="work"/> in the namespace without blocking the caller.</summary>
    public async Task<T> InvokeAsync<T>(Func<T> work)
    {
        if (IsCurrent)
        {
            return work();
        }
        var item = new WorkItem(() => work());
        Enqueue(item);
        return (T)(await item.Completion.Task.ConfigureAwait(false))!;
    }

    /// <summary>Stops the thread after the work already queued.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _queue.CompleteAdding();
        if (!IsCurrent)
        {
            _thread.Join();
        }
        _queue.Dispose();
    }

    private void Enqueue(WorkItem item)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        _queue.Add(item);
    }

    private void Run(string path)
    {
        try
        {
            using var fd = SafeFd.OpenReadOnly(path);
            if (Libc.SetNs(fd.Fd, Libc.CLONE_NEWNET) != 0)
            {
                throw new SystemCallException($"setns({path})", Marshal.GetLastPInvokeError());
            }
        }
        catch (Exception e)
        {
            _entered.SetException(e);
            return;
        }
        _entered.SetResult();
        foreach (var item in _queue.GetConsumingEnumerable())
        {
            try
            {
                item.Completion.SetResult(item.Work());
            }
            catch (Exception e)
            {
                item.Completion.SetException(e);
            }
        }
    }

    private sealed class WorkItem(Func<object?> work)
    {
        public Func<object?> Work { get; } = work;

        // Continuations run on the pool, never inline on the namespace thread, so a caller's
        // continuation cannot end up running (and creating sockets) inside this namespace.
        public TaskCompletionSource<object?> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
