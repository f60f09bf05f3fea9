using Relay.Core.Dataplane;
using Relay.Core.LoadBalancing;
using Relay.Core.Model;
using static Relay.Core.Tests.Dataplane.Specs;

namespace Relay.Core.Tests.Dataplane;

public class DataplaneImageTests
{
    private static DataplaneLink Link(int i) => new($"rv{i}", Backend(i).Address4, Backend(i).Address6);

    private static readonly NftRuleset Skeleton = DataplaneCompiler.Compile(DataplaneSpec.Empty);

    [Fact]
    public void Plan_FromEmpty_TransactionBuildsCompiledRuleset()
    {
        var image = new DataplaneImage();
        var services = new[] { Service(0, [0, 1]), Service(1, [2], LoadBalancingPolicy.Maglev), Service(2, [3], ports: [new PortMapping(TransportProtocol.Udp, 53, 53)]) };
        var desired = DataplaneCompiler.Compile(new DataplaneSpec(services, [Link(0)]));

        var plan = image.Plan(services, links: [Link(0)]);

        NftApply.AssertSame(desired, NftApply.Apply(Skeleton, plan.Transaction));
        NftApply.AssertSame(desired, image.ToRuleset(plan));
        Assert.Equal(6, plan.Transaction.ChainsAdded);
        Assert.Equal(desired.ElementCount, plan.Transaction.ElementsAdded);
    }

    [Fact]
    public void Plan_NotCommitted_ImageUnchanged()
    {
        var image = new DataplaneImage();

        var plan = image.Plan([Service(0, [0, 1])]);

        Assert.Equal(0, image.ServiceCount);
        Assert.Equal(0, image.ToRuleset().ElementCount);
        Assert.Empty(image.ToRuleset().Chains);
        Assert.False(plan.Transaction.IsEmpty);
        // Planned again, the same change is emitted again: nothing was recorded.
        Assert.Equal(plan.Transaction.ToString(), image.Plan([Service(0, [0, 1])]).Transaction.ToString());
    }

    [Fact]
    public void Commit_Plan_RecordsState()
    {
        var image = new DataplaneImage();
        var plan = image.Plan([Service(0, [0, 1]), Service(1, [2])]);

        image.Commit(plan);

        Assert.Equal(2, image.ServiceCount);
        NftApply.AssertSame(DataplaneCompiler.Compile(Spec(Service(0, [0, 1]), Service(1, [2]))), image.ToRuleset());
        Assert.True(image.Plan([Service(0, [0, 1])]).Transaction.IsEmpty);
    }

    [Fact]
    public void Commit_PlanOfAnotherImage_Throws()
    {
        var plan = new DataplaneImage().Plan([Service(0, [0])]);

        Assert.Throws<InvalidOperationException>(() => new DataplaneImage().Commit(plan));
    }

    [Fact]
    public void Commit_SamePlanTwice_Throws()
    {
        var image = new DataplaneImage();
        var plan = image.Plan([Service(0, [0])]);
        image.Commit(plan);

        Assert.Throws<InvalidOperationException>(() => image.Commit(plan));
    }

    [Fact]
    public void Plan_RepointOneServiceAmong10000_TwoDeletionsTwoAdditionsNoChains()
    {
        var image = new DataplaneImage();
        image.Commit(image.Plan(Enumerable.Range(0, 10_000).Select(i => Service(i, [i % 50]))));

        var plan = image.Plan([Service(4321, [77])]);

        Assert.Equal(2, plan.Transaction.ElementsDeleted);
        Assert.Equal(2, plan.Transaction.ElementsAdded);
        Assert.Equal(0, plan.Transaction.ChainsAdded + plan.Transaction.ChainsDeleted + plan.Transaction.ChainsChanged);
        Assert.Equal(4, plan.Transaction.Commands);
        Assert.Equal(10_000, image.ServiceCount);
    }

    [Fact]
    public void Plan_LastUserOfChainMoves_AddsNewChainDeletesOld()
    {
        var image = new DataplaneImage();
        image.Commit(image.Plan([Service(0, [0, 1]), Service(1, [2])]));

        var plan = image.Plan([Service(0, [0, 1, 5])]);
        var text = plan.Transaction.ToString();

        Assert.Equal(2, plan.Transaction.ChainsAdded);
        Assert.Equal(2, plan.Transaction.ChainsDeleted);
        Assert.Contains("add chain inet relay lb4-round-robin-3\n", text);
        Assert.EndsWith("delete chain inet relay lb4-round-robin-2\ndelete chain inet relay lb6-round-robin-2\n", text);
        Assert.True(text.IndexOf("add chain", StringComparison.Ordinal) < text.IndexOf("add element", StringComparison.Ordinal));
    }

    [Fact]
    public void Plan_ChainStillUsedByAnotherService_NotDeleted()
    {
        var image = new DataplaneImage();
        image.Commit(image.Plan([Service(0, [0, 1]), Service(1, [2, 3])]));

        var plan = image.Plan([], removedServices: [Service(0, []).Name]);

        Assert.Equal(0, plan.Transaction.ChainsDeleted);
        Assert.Equal(8, plan.Transaction.ElementsDeleted); // with the service's two traffic counters
        Assert.Equal(0, plan.Transaction.ElementsAdded);
        image.Commit(plan);

        var last = image.Plan([], removedServices: [Service(1, []).Name]);

        Assert.Equal(2, last.Transaction.ChainsDeleted);
    }

    [Fact]
    public void Plan_VipMovesFromRemovedServiceToNewOne_DeletesBeforeAdding()
    {
        var image = new DataplaneImage();
        image.Commit(image.Plan([Service(0, [0])]));
        var (v4, v6) = Vip(0);
        var successor = new DataplaneService("other.example", v4, v6, LoadBalancingPolicy.RoundRobin, 1009, [], [Backend(1)]);

        var plan = image.Plan([successor], removedServices: [Service(0, []).Name]);

        var current = DataplaneCompiler.Compile(Spec(Service(0, [0])));
        NftApply.AssertSame(DataplaneCompiler.Compile(Spec(successor)), NftApply.Apply(current, plan.Transaction));
    }

    [Fact]
    public void Plan_RandomChangeSequence_TransactionsKeepKernelEqualToCompiledSpec()
    {
        var random = new Random(4242);
        var image = new DataplaneImage();
        var kernel = Skeleton;
        // The model as committed; each step works on copies and adopts them only when committed.
        var committedServices = new Dictionary<int, DataplaneService>();
        var committedLinks = new SortedSet<int>();
        var refused = 0;
        for (var step = 0; step < 200; step++)
        {
            var services = new Dictionary<int, DataplaneService>(committedServices);
            var links = new SortedSet<int>(committedLinks);
            var set = new Dictionary<string, DataplaneService>();
            var removed = new HashSet<string>();
            var addLinks = new List<DataplaneLink>();
            var removeLinks = new List<string>();
            for (var k = random.Next(1, 4); k > 0; k--)
            {
                var id = random.Next(14);
                if (services.TryGetValue(id, out var old) && random.Next(4) == 0)
                {
                    services.Remove(id);
                    set.Remove(old.Name);
                    removed.Add(old.Name);
                }
                else
                {
                    var policy = (LoadBalancingPolicy)random.Next(4);
                    var backends = Enumerable.Range(0, random.Next(0, 5)).Select(_ => random.Next(20)).Distinct().ToArray();
                    PortMapping[] ports = random.Next(3) == 0 ? [new PortMapping(TransportProtocol.Tcp, 80, 8080)] : [];
                    var size = Maglev.GrowTableSize(old?.MaglevTableSize ?? 0, backends.Length);
                    var s = Service(id, backends, policy, ports, size);
                    services[id] = s;
                    removed.Remove(s.Name);
                    set[s.Name] = s;
                }
            }
            var link = random.Next(10);
            if (links.Remove(link))
            {
                removeLinks.Add($"rv{link}");
            }
            else
            {
                links.Add(link);
                addLinks.Add(Link(link));
            }
            var desired = DataplaneCompiler.Compile(new DataplaneSpec(
                services.OrderBy(s => s.Key).Select(s => s.Value).ToArray(),
                links.Select(Link).ToArray()));

            var plan = image.Plan(set.Values, removed, addLinks, removeLinks);
            var applied = NftApply.Apply(kernel, plan.Transaction);

            NftApply.AssertSame(desired, applied);
            NftApply.AssertSame(desired, image.ToRuleset(plan));
            if (random.Next(8) == 0)
            {
                // The kernel refused the transaction: nothing is committed and the image still
                // describes the kernel as it was.
                refused++;
                NftApply.AssertSame(kernel, image.ToRuleset());
                continue;
            }
            image.Commit(plan);
            kernel = applied;
            committedServices = services;
            committedLinks = links;
            if (step % 10 == 0)
            {
                NftApply.AssertSame(desired, image.ToRuleset());
            }
        }
        Assert.True(refused > 8, $"only {refused} refused plans");
    }
}
