using Relay.Cluster;

namespace Relay.Core.Tests.Cluster;

public class AppliedRecordTests
{
    [Fact]
    public void RoundTrips_WithTheTimeItsKernelTookTheRevision()
    {
        var at = new DateTimeOffset(2026, 12, 7, 20, 15, 33, 149, TimeSpan.Zero).AddTicks(1234);
        var json = new AppliedRecord(81, at).ToJson();

        Assert.Contains("\"revision\":81", json, StringComparison.Ordinal);
        Assert.Equal(new AppliedRecord(81, at), AppliedRecord.Parse(json));
    }

    [Theory]
    [InlineData("41", 41)] // what earlier daemons wrote: the bare revision
    [InlineData("0", 0)]
    [InlineData(null, 0)] // no record yet
    [InlineData("{not json", 0)] // not a record Relay wrote
    [InlineData("-5", 0)]
    public void Parse_ReadsTheBareRevisionToo_AndAnythingElseAsNothingApplied(string? value, long revision)
    {
        var record = AppliedRecord.Parse(value);

        Assert.Equal(revision, record.Revision);
        Assert.Null(record.At);
    }
}
