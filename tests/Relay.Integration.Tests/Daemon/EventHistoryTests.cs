using System.Text.Json;
using Relay.Integration.Tests.Support;

namespace Relay.Integration.Tests.Daemon;

/// <summary>The daemon's events outlive it: after a stop, and after a kill -9, `relay events` still tells what happened before.</summary>
public sealed class EventHistoryTests
{
    [Fact]
    public async Task Events_survive_a_restart_and_a_kill9_of_the_daemon()
    {
        await using var bed = new DaemonBed();
        bed.Ok("network", "create", bed.Network);
        bed.Ok("service", "add", "e.test", "--network", bed.Network);
        bed.Ok("instance", "add", "e.test", "--name", "e-1", "--network", bed.Network);
        var before = Keys(Live.Events(bed));
        Assert.Contains(("instance.added", "e-1"), before.Select(k => (k.Kind, k.Subject)));

        Assert.Equal(0, bed.Stop());
        bed.Start();
        var afterStop = Keys(Live.Events(bed));
        Assert.Equal(before, afterStop.Take(before.Length));

        // A kill -9 loses at most what the background writer had not written yet: wait a moment.
        using (var added = System.Text.Json.JsonDocument.Parse(bed.Ok("instance", "add", "e.test", "--name", "e-2", "--network", bed.Network, "-o", "json")))
        {
            Assert.Equal("e-2", added.RootElement.GetProperty("name").GetString());
        }
        var withE2 = Keys(Live.Events(bed));
        Thread.Sleep(300);
        bed.Kill9();
        bed.Start();
        var afterKill = Keys(Live.Events(bed));
        Assert.Equal(withE2, afterKill.Take(withE2.Length));
        Assert.Contains(("instance.added", "e-2"), afterKill.Select(k => (k.Kind, k.Subject)));
    }

    private static (string Time, string Kind, string Subject)[] Keys(JsonElement[] events)
        => events.Select(e => (e.GetProperty("time").GetString()!, e.GetProperty("kind").GetString()!, e.GetProperty("subject").GetString()!)).ToArray();
}
