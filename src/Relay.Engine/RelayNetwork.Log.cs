using System.Net;
using Microsoft.Extensions.Logging;

namespace Relay.Engine;

public sealed partial class RelayNetwork
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "network {Network}: created (namespace {Namespace})")]
    private static partial void LogCreated(ILogger log, string network, string @namespace);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "network {Network}: service {Service} added, virtual addresses {Vip4} and {Vip6}, policy {Policy}")]
    private static partial void LogServiceAdded(ILogger log, string network, string service, IPAddress vip4, IPAddress vip6, string policy);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "network {Network}: service {Service} removed")]
    private static partial void LogServiceRemoved(ILogger log, string network, string service);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "network {Network}: instance {Instance} of {Service} added at {Address4} and {Address6} ({State})")]
    private static partial void LogInstanceAdded(ILogger log, string network, string instance, string service, IPAddress address4, IPAddress address6, string state);

    [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "network {Network}: instance {Instance} removed")]
    private static partial void LogInstanceRemoved(ILogger log, string network, string instance);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "network {Network}: service {Service} migrated {From} -> {To}: re-point {RepointUs:F0} us, conntrack cleanup {CleanupUs:F0} us, {Deleted} stale flows deleted")]
    private static partial void LogMigrated(ILogger log, string network, string service, string from, string to, double repointUs, double cleanupUs, int deleted);

    [LoggerMessage(EventId = 7, Level = LogLevel.Information, Message = "network {Network}: instance {Instance} drained: {TcpAtStart} TCP flows at start, {TcpCut} cut, {DurationMs:F0} ms")]
    private static partial void LogDrained(ILogger log, string network, string instance, int tcpAtStart, int tcpCut, double durationMs);

    [LoggerMessage(EventId = 8, Level = LogLevel.Information, Message = "network {Network}: instance {Instance}: started pid {Pid}: {Command}")]
    private static partial void LogProcessStarted(ILogger log, string network, string instance, int pid, string command);

    [LoggerMessage(EventId = 9, Level = LogLevel.Information, Message = "network {Network}: instance {Instance}: pid {Pid} stopped (exit code {ExitCode})")]
    private static partial void LogProcessStopped(ILogger log, string network, string instance, int pid, int exitCode);

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "network {Network}: instance {Instance} is {Health} {Reason}")]
    private static partial void LogHealthChanged(ILogger log, string network, string instance, string health, string reason);

    [LoggerMessage(EventId = 20, Level = LogLevel.Error, Message = "network {Network}: instance {Instance}: could not apply a health change: {Reason}")]
    private static partial void LogHealthApplyFailed(ILogger log, string network, string instance, string reason);

    [LoggerMessage(EventId = 12, Level = LogLevel.Warning, Message = "network {Network}: could not write the record of created namespaces: {Reason}")]
    private static partial void LogRecordFailed(ILogger log, string network, string reason);

    [LoggerMessage(EventId = 14, Level = LogLevel.Warning, Message = "network {Network}: instance {Instance}: {Count} stateless flows still pointed at it after its migration (deleted now)")]
    private static partial void LogStragglers(ILogger log, string network, string instance, int count);

    [LoggerMessage(EventId = 15, Level = LogLevel.Information, Message = "network {Network}: flow addresses {Flow4} and {Flow6} for {Client} -> {Service} (at {Backend})")]
    private static partial void LogFlowAllocated(ILogger log, string network, string client, string service, IPAddress flow4, IPAddress flow6, string backend);

    [LoggerMessage(EventId = 16, Level = LogLevel.Warning, Message = "network {Network}: no flow address for {Client} -> {Service}: {Reason}")]
    private static partial void LogFlowFailed(ILogger log, string network, string client, string service, string reason);

    [LoggerMessage(EventId = 17, Level = LogLevel.Information, Message = "network {Network}: flow {Client} -> {Service} re-pointed {From} -> {To}")]
    private static partial void LogFlowRepointed(ILogger log, string network, string client, string service, string from, string to);

    [LoggerMessage(EventId = 18, Level = LogLevel.Error, Message = "network {Network}: could not write the change to the store: {Reason}")]
    private static partial void LogStoreFailed(ILogger log, string network, string reason);

    [LoggerMessage(EventId = 19, Level = LogLevel.Warning, Message = "network {Network}: an event handler failed: {Reason}")]
    private static partial void LogEventHandlerFailed(ILogger log, string network, string reason);

    [LoggerMessage(EventId = 21, Level = LogLevel.Information, Message = "network {Network}: restored (table rewritten: {Rewritten}; instances re-wired: {Rewired}; commands adopted: {Adopted}, started: {Started}; orphans removed: {Orphans})")]
    private static partial void LogRestored(ILogger log, string network, bool rewritten, int rewired, int adopted, int started, int orphans);

    [LoggerMessage(EventId = 24, Level = LogLevel.Warning, Message = "network {Network}: {Count} stateless flows followed a change the store does not hold (the daemon died inside an operation); deleted, their next packets follow the restored table")]
    private static partial void LogStaleAtRestore(ILogger log, string network, int count);

    [LoggerMessage(EventId = 22, Level = LogLevel.Information, Message = "network {Network}: detached (left running in the kernel)")]
    private static partial void LogDetached(ILogger log, string network);

    [LoggerMessage(EventId = 23, Level = LogLevel.Error, Message = "network {Network}: instance {Instance}: draining or removing it failed: {Reason}")]
    private static partial void LogDrainFailed(ILogger log, string network, string instance, string reason);

    [LoggerMessage(EventId = 13, Level = LogLevel.Information, Message = "network {Network}: torn down")]
    private static partial void LogTornDown(ILogger log, string network);
}
