using System.Diagnostics;
using Relay.Core.Conntrack;
using Relay.Core.Errors;
using Relay.Core.Naming;
using Relay.Engine.Health;
using Relay.Linux.Namespaces;
using Relay.Linux.Processes;
using Relay.Linux.Topology;

namespace Relay.Engine;

/// <summary>
/// Instances: their namespaces and links, their commands (supervised by restart policy) and their
/// health checks (an unhealthy instance leaves the balancer and its stateless flows move at once).
/// </summary>
public sealed partial class RelayNetwork
{
    private readonly InstanceSupervisor _supervisor;

    /// <summary>
    /// Adds an instance of <paramref name="service"/>: its namespace and veth, its addresses, its
    /// command, and (unless standby) its place in the balancer, in that order, so that it only
    /// receives traffic once it is up. With a health check it takes new flows once healthy.
    /// </summary>
    public InstanceInfo AddInstance(string service, InstanceOptions? options = null)
    {
        options ??= new InstanceOptions();
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            ServiceRecord? svc = null;
            try
            {
                svc = FindService(service, "instance.service");
            }
            catch (RelayException e)
            {
                errors.AddRange(e.Errors);
            }
            var name = options.Name is null ? (svc is null ? null : GenerateInstanceName(svc.Name)) : ResourceName.ValidateInstance(options.Name, "instance.name", errors);
            if (name is not null && _state.Instances.ContainsKey(name))
            {
                errors.Add(ErrorCode.Duplicate, "instance.name", $"instance '{name}' already exists");
            }
            if (options.Command is { } cmd)
            {
                ValidateCommand(cmd, "instance.command", errors);
            }
            var restart = RestartPolicies.Parse(options.Restart, RestartPolicy.OnFailure, "instance.restart", errors);
            var check = HealthCheck.FromSpec(options.Health, "instance.health", errors);
            var a4 = PickAddress(_instances4, null, "instance.address4", errors);
            var a6 = PickAddress(_instances6, null, "instance.address6", errors);
            errors.ThrowIfAny();

            var index = _nextIndex;
            var record = new InstanceRecord(name!, svc!.Name, index, NetworkNames.Instance(Name, name!, _options.Node), NetworkNames.HostInterface(index), a4!, a6!,
                options.Command is null ? null : [.. options.Command], options.Standby ? InstanceState.Standby : InstanceState.Active)
            {
                Restart = RestartPolicies.Of(restart),
                HealthSpec = options.Health,
                Health = check is null ? HealthStates.None : HealthStates.Starting,
            };
            var wiring = Wiring(record);
            TopologyBuilder.WireInstance(OrchestratorNamespace, _gateways, wiring);
            InstanceProcess? process = null;
            try
            {
                WriteResolvConf(record);
                if (record.Command is { } command)
                {
                    process = StartProcess(record, command);
                    record = record with { Pid = process.Pid, PidStart = process.StartTime };
                }
                var step = Begin();
                step.Put(record);
                if (!options.Standby)
                {
                    step.Put(GrowBackends(svc, svc.Backends.Add(record.Name)));
                }
                Commit(step);
            }
            catch
            {
                process?.StopAsync(_options.StopGrace).GetAwaiter().GetResult();
                process?.Dispose();
                NamespacedProcess.KillNamespace(record.Namespace);
                TopologyBuilder.UnwireInstance(OrchestratorNamespace, wiring);
                NetnsEtc.Remove(record.Namespace);
                throw;
            }
            _instanceByAddress[record.Address4] = record.Name;
            _instanceByAddress[record.Address6] = record.Name;
            _instances4.Claim(a4!);
            _instances6.Claim(a6!);
            _nextIndex++;
            if (process is not null)
            {
                Supervise(record.Name, process);
            }
            if (check is not null)
            {
                StartHealth(record, check);
            }
            Persist();
            LogInstanceAdded(_log, Name, record.Name, record.Service.Value, record.Address4, record.Address6, record.State.ToString());
            Emit(EventKinds.InstanceAdded, record.Name, $"instance {record.Name} of {record.Service} added at {record.Address4}",
                ("service", record.Service.Value), ("address4", record.Address4), ("address6", record.Address6), ("state", record.State));
            return Info(record);
        }
    }

    /// <summary>
    /// Takes an instance out of the balancer (its ICMP/UDP flows move to the remaining instances at
    /// once), lets its TCP flows drain until they close or <paramref name="drain"/> passes (default:
    /// the network's drain timeout; zero cuts them), then stops it and removes its namespace.
    /// The returned task completes when the instance is gone.
    /// </summary>
    public Task<DrainResult> RemoveInstanceAsync(string instance, TimeSpan? drain = null)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            var record = FindInstance(instance, "instance", errors);
            CheckDrain(drain, errors);
            errors.ThrowIfAny();
            if (record!.State == InstanceState.Draining)
            {
                throw new RelayException(ErrorCode.Conflict, "instance", $"instance '{record.Name}' is already leaving");
            }
            var svc = _state.Services[record.Service];
            var started = Stopwatch.GetTimestamp();
            var deadline = drain ?? _options.DrainTimeout;
            // Out of the balancer; its flow addresses move to the instances that remain (or go,
            // with the last one), and its stateless flows are balanced afresh.
            var step = Begin();
            if (record.State == InstanceState.Active)
            {
                step.Put(svc with { Backends = svc.Backends.Remove(record.Name) });
            }
            record = record with { State = InstanceState.Draining, DrainUntil = DateTimeOffset.UtcNow + deadline };
            step.Put(record);
            Commit(step);
            Persist();
            Emit(EventKinds.InstanceDraining, record.Name, $"instance {record.Name} left the balancer; TCP flows drain for up to {deadline.TotalSeconds:0.###} s",
                ("service", svc.Name.Value), ("deadlineMs", deadline.TotalMilliseconds));
            return StartDrain(record, svc, deadline, started);
        }
    }

    /// <summary>Every instance, sorted by name.</summary>
    public IReadOnlyList<InstanceInfo> Instances
    {
        get
        {
            lock (_gate)
            {
                return _state.Instances.Values.OrderBy(i => i.Name, StringComparer.Ordinal).Select(Info).ToArray();
            }
        }
    }

    /// <summary>One instance.</summary>
    public InstanceInfo GetInstance(string instance)
    {
        lock (_gate)
        {
            var errors = new ErrorCollector();
            var record = FindInstance(instance, "instance", errors);
            errors.ThrowIfAny();
            return Info(record!);
        }
    }

    /// <summary>The last <paramref name="lines"/> lines of an instance's command output (kept in a log file).</summary>
    public IReadOnlyList<string> Logs(string instance, int lines = 200)
    {
        string file;
        lock (_gate)
        {
            var errors = new ErrorCollector();
            var record = FindInstance(instance, "instance", errors);
            errors.ThrowIfAny();
            file = LogFile(record!);
        }
        return InstanceProcess.Tail(file, lines);
    }

    /// <summary>Runs a command inside an instance's namespace; the caller owns (and disposes) the process.</summary>
    public NamespacedProcess Exec(string instance, IReadOnlyList<string> command, Action<string>? onOutput = null)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            var errors = new ErrorCollector();
            var record = FindInstance(instance, "instance", errors);
            ValidateCommand(command, "command", errors);
            errors.ThrowIfAny();
            return NamespacedProcess.Start(record!.Namespace, command, onOutput);
        }
    }

    /// <summary>
    /// The instances of <paramref name="s"/> that take new flows: the members of the balancer that
    /// pass their health check (or have none). When none passes, all members stay: an instance
    /// that fails a check may still serve, and no instance surely would not.
    /// </summary>
    private IReadOnlyList<InstanceRecord> EffectiveBackends(ServiceRecord s) => LocalPlan.EffectiveBackends(_state, s);

    /// <summary>Records a change of an instance that the kernel may not even see (its pid, its restarts); still through <see cref="Commit"/>.</summary>
    private void Update(InstanceRecord record)
    {
        var step = Begin();
        step.Put(record);
        Commit(step);
    }

    private Task<DrainResult> StartDrain(InstanceRecord record, ServiceRecord svc, TimeSpan deadline, long started)
    {
        var task = Task.Run(async () =>
        {
            var vips = new[] { svc.Vip4, svc.Vip6 };
            var olds = new[] { record.Address4, record.Address6 };
            var stale = new StaleFlows(vips, olds);
            int? atStart = null;
            var cut = 0;
            var until = started + (long)(deadline.TotalSeconds * Stopwatch.Frequency);
            while (!_disposed)
            {
                // Read from the kernel, not the event index: a stateless flow whose translation was
                // decided while the re-point committed can have escaped the index; it goes now.
                var flows = _dataplane.FlowsTo(vips, olds);
                var stragglers = flows.Where(stale.IsStatelessMatch).ToArray();
                if (stragglers.Length > 0)
                {
                    LogStragglers(_log, Name, record.Name, stragglers.Length);
                    _dataplane.DeleteFlows(stragglers);
                }
                var open = flows.Where(stale.IsTcpMatch).ToArray();
                var draining = open.Count(stale.IsDrainingTcp);
                atStart ??= draining;
                _drainOpen[record.Name] = draining;
                if (draining == 0)
                {
                    break;
                }
                if (Stopwatch.GetTimestamp() >= until)
                {
                    // The deadline: forget the old instance's TCP entries, so the client's next
                    // segment is picked up afresh, reaches an instance without that connection
                    // and gets a reset instead of silence.
                    cut = draining;
                    _dataplane.DeleteFlows(open);
                    break;
                }
                await Task.Delay(TimeSpan.FromMilliseconds(100)).ConfigureAwait(false);
            }
            await StopInstanceAsync(record.Name).ConfigureAwait(false);
            _drainOpen.TryRemove(record.Name, out _);
            var result = new DrainResult(record.Name, atStart ?? 0, cut, Stopwatch.GetElapsedTime(started));
            LogDrained(_log, Name, record.Name, result.TcpFlowsAtStart, cut, result.Duration.TotalMilliseconds);
            return result;
        });
        // Nobody may be waiting on it: a failure must at least be seen in the log.
        _ = task.ContinueWith(t => LogDrainFailed(_log, Name, record.Name, t.Exception!.GetBaseException().Message), CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        return task;
    }

    private async Task StopInstanceAsync(string name)
    {
        lock (_gate)
        {
            if (!_disposed && _state.Instances.TryGetValue(name, out var record))
            {
                RemoveNowLocked(record);
            }
        }
        await Task.CompletedTask.ConfigureAwait(false);
    }

    /// <summary>Removes an instance that is out of the balancer: checks, processes, anti-spoofing elements, link, namespace, addresses.</summary>
    private void RemoveNowLocked(InstanceRecord record)
    {
        _supervisor.Forget(record.Name);
        if (_supervisor.Release(record.Name) is { } process)
        {
            process.StopAsync(_options.StopGrace).GetAwaiter().GetResult();
            LogProcessStopped(_log, Name, record.Name, process.Pid, -1);
            process.Dispose();
        }
        // Whatever else runs in the instance (children, commands run with Exec) stops with it.
        NamespacedProcess.TerminateNamespaceAsync(record.Namespace, _options.StopGrace).GetAwaiter().GetResult();
        // Its link's anti-spoofing elements, and the flow addresses it held as a client, go with it.
        var step = Begin();
        step.DropInstance(record.Name);
        Commit(step);
        TopologyBuilder.UnwireInstance(OrchestratorNamespace, Wiring(record));
        NetnsEtc.Remove(record.Namespace);
        if (File.Exists(LogFile(record)))
        {
            File.Delete(LogFile(record));
        }
        _instanceByAddress.Remove(record.Address4);
        _instanceByAddress.Remove(record.Address6);
        _instances4.Release(record.Address4);
        _instances6.Release(record.Address6);
        Persist();
        LogInstanceRemoved(_log, Name, record.Name);
        Emit(EventKinds.InstanceRemoved, record.Name, $"instance {record.Name} removed", ("service", record.Service.Value));
    }

    private string LogFile(InstanceRecord record) => Path.Combine(_options.LogDirectory, Name, record.Name + ".log");

    private InstanceProcess StartProcess(InstanceRecord record, IReadOnlyList<string> command)
    {
        // Who it is, for commands that want to say so (the UTS hostname is the host's).
        var environment = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["RELAY_NETWORK"] = Name,
            ["RELAY_SERVICE"] = record.Service.Value,
            ["RELAY_INSTANCE"] = record.Name,
        };
        var process = InstanceProcess.Start(record.Namespace, command, LogFile(record), environment);
        LogProcessStarted(_log, Name, record.Name, process.Pid, string.Join(' ', command));
        return process;
    }

    /// <summary>Watches <paramref name="process"/>; when it exits, restarts it as the instance's policy says.</summary>
    private void Supervise(string instance, InstanceProcess process) => _supervisor.Supervise(instance, process);

    SupervisedInstance? ISupervisorHost.Current(string instance)
        => _disposed || !_state.Instances.TryGetValue(instance, out var record) ? null
            : new SupervisedInstance(record.Command, RestartPolicies.Parse(record.Restart, RestartPolicy.OnFailure, "restart", new ErrorCollector()), record.State == InstanceState.Draining);

    InstanceProcess ISupervisorHost.Start(string instance, IReadOnlyList<string> command) => StartProcess(_state.Instances[instance], command);

    void ISupervisorHost.Exited(string instance, InstanceProcess process, int? exitCode, bool restarting, TimeSpan delay, SupervisedInstance current)
    {
        LogProcessStopped(_log, Name, instance, process.Pid, exitCode ?? -1);
        // Recorded, so that a daemon restart knows a command that stays down from one whose
        // restart was pending.
        Update(_state.Instances[instance] with { Pid = null, PidStart = null, Ended = !restarting });
        Emit(EventKinds.InstanceExited, instance, $"instance {instance}: command exited ({(exitCode is { } c ? "code " + c : "code unknown")})" + (restarting ? "; restarting" : ""),
            ("exitCode", exitCode), ("restart", restarting));
        Persist();
    }

    void ISupervisorHost.Restarted(string instance, InstanceProcess process, int restarts)
    {
        // The count is the record's: it survives the daemon.
        var record = _state.Instances[instance];
        Update(record with { Pid = process.Pid, PidStart = process.StartTime, Restarts = record.Restarts + 1 });
        Persist();
        Emit(EventKinds.InstanceStarted, instance, $"instance {instance}: command restarted (restart {record.Restarts + 1})", ("pid", process.Pid), ("restarts", record.Restarts + 1));
    }

    void ISupervisorHost.RestartFailed(string instance, Exception error)
        => Emit(EventKinds.InstanceExited, instance, $"instance {instance}: command could not be restarted: {error.Message}", ("exitCode", (int?)null), ("restart", false));

    private void StartHealth(InstanceRecord record, HealthCheck check)
        => _supervisor.StartHealth(record.Name, check, new ProbeTarget(record.Namespace, _orchestrator, record.Address4));

    void ISupervisorHost.HealthChanged(string instance, HealthMonitor monitor, HealthState state) => OnHealthChanged(instance, monitor, state);

    /// <summary>
    /// A health transition: the instance leaves or rejoins the set of instances taking new flows.
    /// Leaving, its stateless flows (ICMP, UDP) move at once, as in a migration, and its flow
    /// addresses are re-pointed; its TCP connections stay (they may still work).
    /// </summary>
    private void OnHealthChanged(string instance, HealthMonitor monitor, HealthState state)
    {
        lock (_gate)
        {
            if (_disposed || !_supervisor.IsCurrent(instance, monitor) || !_state.Instances.TryGetValue(instance, out var record))
            {
                return;
            }
            var health = state switch
            {
                HealthState.Healthy => HealthStates.Healthy,
                HealthState.Unhealthy => HealthStates.Unhealthy,
                _ => HealthStates.Starting,
            };
            if (health == record.Health)
            {
                return;
            }
            try
            {
                // The balancer follows from the verdict (Commit): leaving it, the instance's
                // stateless flows and flow addresses move.
                Update(record with { Health = health });
                Persist();
                var inBalancer = EffectiveBackends(_state.Services[record.Service]).Any(b => b.Name == instance);
                LogHealthChanged(_log, Name, instance, health, monitor.LastError ?? "");
                Emit(EventKinds.InstanceHealth, instance, $"instance {instance} is {health}" + (monitor.LastError is { Length: > 0 } why && health != HealthStates.Healthy ? $": {why}" : ""),
                    ("health", health), ("inBalancer", inBalancer), ("reason", monitor.LastError));
            }
            catch (RelayException e)
            {
                LogHealthApplyFailed(_log, Name, instance, e.Message);
            }
        }
    }
}
