using System.Collections.Immutable;
using System.Net;
using Relay.Core.Dataplane;
using Relay.Core.LoadBalancing;
using Relay.Core.Naming;
using Relay.Engine;

namespace Relay.Integration.Tests.Engine;

/// <summary>
/// The single host's reconciler, pure (no kernel, no root): what each step's delta does to a model
/// of the table must be what the projection of the whole state says, and the conntrack entries it
/// calls stale must be exactly those of the instances that stopped taking flows.
/// </summary>
public sealed class LocalPlanTests
{
    [Fact]
    public void Delta_OfRandomSteps_KeepsTheTableEqualToTheProjectionOfTheWholeState()
    {
        var random = new Random(20261207);
        var state = LocalState.Empty;
        var image = new DataplaneImage();
        var next = 0;
        var (mostInstances, mostFlows, migrations) = (0, 0, 0);
        for (var n = 0; n < 2000; n++)
        {
            var step = new LocalStep(state);
            RandomChange(step, random, ref next);
            var delta = LocalPlan.Delta(step);
            var plan = image.Plan(delta.Services, delta.RemovedServices, delta.Links, delta.RemovedLinks, delta.Flows, delta.RemovedFlows);
            image.Commit(plan);

            Assert.True(image.PlanSync(LocalPlan.All(step.State)).Transaction.IsEmpty, $"step {n}: the table differs from the projection of the state");
            var gone = GoneTranslations(step.From, step.State);
            Assert.Equal(gone.Backends.Order().ToArray(), delta.StaleBackends.Select(a => a.ToString()).Order().ToArray());
            Assert.True(gone.Virtual.IsSubsetOf(delta.StaleVirtual.Select(a => a.ToString())), $"step {n}: a virtual address that lost an instance is not cleaned");
            state = LocalPlan.Next(step, delta);
            Assert.Same(state.Net, state.View.State);
            mostInstances = Math.Max(mostInstances, state.Instances.Count);
            mostFlows = Math.Max(mostFlows, state.Flows.Count);
            migrations += step.From.Instances.Values.Count(i => i.State != InstanceState.Draining && state.Instances.TryGetValue(i.Name, out var now) && now.State == InstanceState.Draining);
        }
        Assert.True(mostInstances >= 10 && mostFlows >= 5 && migrations >= 10, $"the random walk should have built something: {mostInstances} instances, {mostFlows} flows, {migrations} migrations at most");
    }

    [Fact]
    public void Delta_OfAMigration_IsOneChangedServiceAndTheOldInstancesStaleFlows()
    {
        var state = LocalState.Empty;
        var setup = new LocalStep(state);
        setup.Put(Service("b.com", 1, ["b1"]));
        setup.Put(Instance("b1", "b.com", 1, InstanceState.Active));
        setup.Put(Instance("b2", "b.com", 2, InstanceState.Standby));
        state = setup.State;

        var migrate = new LocalStep(state);
        migrate.Put(state.Services[ServiceName.Parse("b.com")] with { Backends = ["b2"] });
        migrate.Put(state.Instances["b2"] with { State = InstanceState.Active });
        migrate.Put(state.Instances["b1"] with { State = InstanceState.Draining });
        var delta = LocalPlan.Delta(migrate);

        var service = Assert.Single(delta.Services);
        Assert.Equal(["b2"], service.Backends.Select(b => b.Instance));
        Assert.Empty(delta.Links);
        Assert.Empty(delta.RemovedLinks);
        Assert.Equal([IPAddress.Parse("10.96.0.1"), IPAddress.Parse("fd00:96::1")], delta.StaleVirtual);
        Assert.Equal([IPAddress.Parse("10.0.0.1"), IPAddress.Parse("fd00::1")], delta.StaleBackends);
    }

    [Fact]
    public void Delta_OfAFailedCheck_MovesTheInstancesFlowsOnlyWhileAnotherPasses()
    {
        var setup = new LocalStep(LocalState.Empty);
        setup.Put(Service("b.com", 1, ["b1", "b2"]));
        setup.Put(Instance("b1", "b.com", 1, InstanceState.Active) with { Health = HealthStates.Healthy });
        setup.Put(Instance("b2", "b.com", 2, InstanceState.Active) with { Health = HealthStates.Healthy });
        var state = setup.State;

        var fail = new LocalStep(state);
        fail.Put(state.Instances["b1"] with { Health = HealthStates.Unhealthy });
        var delta = LocalPlan.Delta(fail);
        Assert.Equal(["b2"], Assert.Single(delta.Services).Backends.Select(b => b.Instance));
        Assert.Contains(IPAddress.Parse("10.0.0.1"), delta.StaleBackends);

        // Both failing: both take flows again (fail open), so nothing is stale.
        var both = new LocalStep(fail.State);
        both.Put(fail.State.Instances["b2"] with { Health = HealthStates.Unhealthy });
        var open = LocalPlan.Delta(both);
        Assert.Equal(["b1", "b2"], Assert.Single(open.Services).Backends.Select(b => b.Instance));
        Assert.Empty(open.StaleBackends);
    }

    [Fact]
    public void Delta_OfAPidOnlyChange_ChangesNothingInTheTable()
    {
        var setup = new LocalStep(LocalState.Empty);
        setup.Put(Service("b.com", 1, ["b1"]));
        setup.Put(Instance("b1", "b.com", 1, InstanceState.Active));
        var image = new DataplaneImage();
        var first = LocalPlan.Delta(setup);
        image.Commit(image.Plan(first.Services, first.RemovedServices, first.Links, first.RemovedLinks, first.Flows, first.RemovedFlows));

        var pid = new LocalStep(setup.State);
        pid.Put(setup.State.Instances["b1"] with { Pid = 4242 });
        var delta = LocalPlan.Delta(pid);
        Assert.True(image.Plan(delta.Services, delta.RemovedServices, delta.Links, delta.RemovedLinks, delta.Flows, delta.RemovedFlows).Transaction.IsEmpty);
        Assert.Empty(delta.StaleVirtual);
    }

    /// <summary>One random operation, as the network's operations build them (flows re-pointed as <c>FlowsFollow</c> does).</summary>
    private static void RandomChange(LocalStep step, Random random, ref int next)
    {
        var s = step.State;
        // In name order: a dictionary's order changes with the process's string hashing, the walk must not.
        var services = s.Services.Values.OrderBy(x => x.Name.Value, StringComparer.Ordinal).ToArray();
        var instances = s.Instances.Values.OrderBy(x => x.Name, StringComparer.Ordinal).ToArray();
        switch (random.Next(services.Length < 3 ? 2 : 7))
        {
            case 0:
                step.Put(Service($"s{next}.com", ++next, []));
                break;
            case 1 when services.Length > 0:
            {
                var svc = services[random.Next(services.Length)];
                var name = $"i{++next}";
                var standby = random.Next(3) == 0;
                step.Put(Instance(name, svc.Name.Value, next, standby ? InstanceState.Standby : InstanceState.Active));
                if (!standby)
                {
                    step.Put(svc with { Backends = svc.Backends.Add(name) });
                }
                break;
            }
            case 2 when instances.Length > 0:
            {
                var i = instances[random.Next(instances.Length)];
                string[] verdicts = [HealthStates.None, HealthStates.Starting, HealthStates.Healthy, HealthStates.Unhealthy];
                step.Put(i with { Health = verdicts[random.Next(verdicts.Length)] });
                break;
            }
            case 3:
            {
                // A migration: a standby instance takes an active one's slot; the old one drains.
                var svc = services[random.Next(services.Length)];
                var standby = instances.FirstOrDefault(i => i.Service == svc.Name && i.State == InstanceState.Standby);
                if (standby is not null && svc.Backends.Count > 0)
                {
                    var old = s.Instances[svc.Backends[0]];
                    step.Put(svc with { Backends = svc.Backends.SetItem(0, standby.Name) });
                    step.Put(standby with { State = InstanceState.Active });
                    step.Put(old with { State = InstanceState.Draining });
                }
                break;
            }
            case 4 when instances.Length > 0:
            {
                // Removed: out of the balancer first (as a drain), gone in the same step here.
                var i = instances[random.Next(instances.Length)];
                var svc = s.Services[i.Service];
                step.Put(svc with { Backends = svc.Backends.Remove(i.Name) });
                step.DropInstance(i.Name);
                break;
            }
            case 5 when instances.Length > 0:
            {
                var client = instances[random.Next(instances.Length)];
                var svc = services[random.Next(services.Length)];
                var taking = LocalPlan.EffectiveBackends(s, svc);
                if (taking.Count > 0 && !s.Flows.ContainsKey((client.Name, svc.Name)))
                {
                    next++;
                    step.Put(new FlowRecord($"{client.Name}>{svc.Name}", client.Name, svc.Name,
                        IPAddress.Parse($"10.128.{next / 250}.{next % 250 + 1}"), IPAddress.Parse($"fd00:128::{next:x}"), taking[0].Name));
                }
                break;
            }
            case 6:
            {
                var svc = services[random.Next(services.Length)];
                if (!s.Instances.Values.Any(i => i.Service == svc.Name))
                {
                    step.DropService(svc.Name);
                }
                break;
            }
        }
        foreach (var flow in step.State.Flows.Values.OrderBy(f => f.Id, StringComparer.Ordinal).ToArray())
        {
            var svc = step.State.Services.GetValueOrDefault(flow.Service);
            var taking = svc is null ? [] : LocalPlan.EffectiveBackends(step.State, svc);
            if (!step.State.Instances.ContainsKey(flow.Client) || taking.Count == 0)
            {
                step.Drop(flow);
            }
            else if (!taking.Any(t => t.Name == flow.Backend))
            {
                step.Put(flow with { Backend = taking[0].Name });
            }
        }
    }

    /// <summary>(virtual address, instance address) translations the whole table had before and not after.</summary>
    private static (HashSet<string> Virtual, HashSet<string> Backends) GoneTranslations(LocalState before, LocalState after)
    {
        static HashSet<(string, string)> Pairs(LocalState state)
        {
            var spec = LocalPlan.All(state);
            var pairs = new HashSet<(string, string)>();
            foreach (var svc in spec.Services)
            {
                foreach (var b in svc.Backends)
                {
                    pairs.Add((svc.Vip4.ToString(), b.Address4.ToString()));
                    pairs.Add((svc.Vip6.ToString(), b.Address6.ToString()));
                }
            }
            foreach (var f in spec.Flows ?? [])
            {
                pairs.Add((f.Flow4.ToString(), f.Backend4.ToString()));
                pairs.Add((f.Flow6.ToString(), f.Backend6.ToString()));
            }
            return pairs;
        }
        var gone = Pairs(before);
        gone.ExceptWith(Pairs(after));
        return (gone.Select(p => p.Item1).ToHashSet(), gone.Select(p => p.Item2).ToHashSet());
    }

    private static ServiceRecord Service(string name, int n, string[] backends)
        => new(ServiceName.Parse(name), IPAddress.Parse($"10.96.{n / 250}.{n % 250}"), IPAddress.Parse($"fd00:96::{n:x}"),
            LoadBalancingPolicy.Random, Maglev.TableSize(0), [], [.. backends]);

    private static InstanceRecord Instance(string name, string service, int n, InstanceState state)
        => new(name, ServiceName.Parse(service), n, "relay-test." + name, "rv" + n, IPAddress.Parse($"10.0.{n / 250}.{n % 250}"),
            IPAddress.Parse($"fd00::{n:x}"), null, state);
}
