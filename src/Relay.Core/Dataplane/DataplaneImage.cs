namespace Relay.Core.Dataplane;

/// <summary>
/// What the kernel holds, kept as per-service and per-link fragments so that an update costs in
/// proportion to what changed, not to the number of services installed: re-pointing one service
/// among 10,000 compiles one service and emits its few changed elements.
/// <para>
/// Use: <see cref="Plan"/> (pure), run the plan's transaction, and only when the kernel accepted it
/// <see cref="Commit"/>. A failed transaction leaves both the kernel and this image unchanged.
/// </para>
/// </summary>
public sealed class DataplaneImage
{
    private readonly Dictionary<string, NftFragment> _services = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NftFragment> _links = new(StringComparer.Ordinal);
    private readonly Dictionary<string, NftFragment> _flows = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _chainRefs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DataplaneService> _serviceInputs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DataplaneLink> _linkInputs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DataplaneFlow> _flowInputs = new(StringComparer.Ordinal);

    /// <summary>Number of services with a fragment.</summary>
    public int ServiceCount => _services.Count;

    /// <summary>
    /// Plans the step to exactly <paramref name="desired"/>: what is in it and differs from what the
    /// image holds is set, what the image holds and it lacks is removed. Unchanged services are not
    /// compiled again (compared by value, so a state rebuilt from the store costs no nft work), which
    /// keeps a step among 10,000 services in proportion to what changed.
    /// </summary>
    public DataplanePlan PlanSync(DataplaneSpec desired)
    {
        var (services, removed) = Changes(desired.Services, s => s.Name, _serviceInputs, _services, Same);
        var (links, removedLinks) = Changes(desired.Links, l => l.HostInterface, _linkInputs, _links, (a, b) => a == b);
        var (flows, removedFlows) = Changes(desired.Flows ?? [], f => f.Id, _flowInputs, _flows, (a, b) => a == b);
        return Plan(services, removed, links, removedLinks, flows, removedFlows);
    }

    /// <summary>
    /// What of <paramref name="desired"/> differs from <paramref name="inputs"/>, and which names the
    /// image holds that it lacks. One pass over the desired list; the names held are only walked
    /// when some of them are missing from it (a step that removes nothing, the usual case among
    /// 10,000 services, builds no set of every name).
    /// </summary>
    private static (List<T> Changed, string[] Removed) Changes<T>(IReadOnlyList<T> desired, Func<T, string> key, Dictionary<string, T> inputs,
        Dictionary<string, NftFragment> held, Func<T, T, bool> same)
    {
        var changed = new List<T>();
        var present = 0;
        foreach (var item in desired)
        {
            if (inputs.TryGetValue(key(item), out var had))
            {
                present++;
                if (!same(had, item))
                {
                    changed.Add(item);
                }
            }
            else
            {
                changed.Add(item);
            }
        }
        if (present == held.Count && held.Count == inputs.Count)
        {
            return (changed, []);
        }
        var wanted = desired.Select(key).ToHashSet(StringComparer.Ordinal);
        return (changed, held.Keys.Where(n => !wanted.Contains(n)).ToArray());
    }

    /// <summary>Value equality of two services (the record's own compares its lists by reference).</summary>
    public static bool Same(DataplaneService a, DataplaneService b)
        => ReferenceEquals(a, b)
           || (a.Name == b.Name && a.Vip4.Equals(b.Vip4) && a.Vip6.Equals(b.Vip6) && a.Policy == b.Policy && a.MaglevTableSize == b.MaglevTableSize
               && a.Ports.SequenceEqual(b.Ports) && a.Backends.SequenceEqual(b.Backends));

    /// <summary>
    /// Plans the change: services in <paramref name="services"/> are set (added or replaced), names in
    /// <paramref name="removedServices"/> removed; links likewise, keyed by host interface.
    /// </summary>
    public DataplanePlan Plan(
        IEnumerable<DataplaneService> services,
        IEnumerable<string>? removedServices = null,
        IEnumerable<DataplaneLink>? links = null,
        IEnumerable<string>? removedLinks = null,
        IEnumerable<DataplaneFlow>? flows = null,
        IEnumerable<string>? removedFlows = null)
    {
        var plan = new DataplanePlan();
        foreach (var f in flows ?? [])
        {
            plan.Flows[f.Id] = DataplaneCompiler.CompileFlow(f);
            plan.FlowInputs[f.Id] = f;
        }
        foreach (var id in removedFlows ?? [])
        {
            plan.Flows[id] = null;
        }
        foreach (var s in services)
        {
            plan.Services[s.Name] = DataplaneCompiler.CompileService(s);
            plan.ServiceInputs[s.Name] = s;
        }
        foreach (var name in removedServices ?? [])
        {
            plan.Services[name] = null;
        }
        foreach (var l in links ?? [])
        {
            plan.Links[l.HostInterface] = DataplaneCompiler.CompileLink(l);
            plan.LinkInputs[l.HostInterface] = l;
        }
        foreach (var name in removedLinks ?? [])
        {
            plan.Links[name] = null;
        }

        var delta = new NftDelta();
        var refs = new Dictionary<string, int>(StringComparer.Ordinal);
        void Diff(NftFragment? before, NftFragment? after)
        {
            before ??= NftFragment.Empty;
            after ??= NftFragment.Empty;
            var old = before.Elements.ToDictionary(e => (e.Set, e.Key), e => e.Value);
            foreach (var e in after.Elements)
            {
                if (!old.Remove((e.Set, e.Key), out var v) || v != e.Value)
                {
                    if (v is not null)
                    {
                        delta.Delete(e.Set, e.Key);
                    }
                    delta.Add(e.Set, e.Key, e.Value);
                }
            }
            foreach (var ((set, key), _) in old)
            {
                delta.Delete(set, key);
            }
            foreach (var chain in before.Chains.Keys)
            {
                refs[chain] = refs.GetValueOrDefault(chain) - 1;
            }
            foreach (var (chain, rules) in after.Chains)
            {
                refs[chain] = refs.GetValueOrDefault(chain) + 1;
                plan.ChainRules.TryAdd(chain, rules);
            }
        }
        foreach (var (name, fragment) in plan.Services)
        {
            Diff(_services.GetValueOrDefault(name), fragment);
        }
        foreach (var (name, fragment) in plan.Links)
        {
            Diff(_links.GetValueOrDefault(name), fragment);
        }
        foreach (var (id, fragment) in plan.Flows)
        {
            Diff(_flows.GetValueOrDefault(id), fragment);
        }
        foreach (var (chain, change) in refs)
        {
            var before = _chainRefs.GetValueOrDefault(chain);
            var after = before + change;
            plan.ChainRefs[chain] = after;
            if (before == 0 && after > 0)
            {
                delta.AddChains[chain] = plan.ChainRules[chain];
            }
            else if (before > 0 && after == 0)
            {
                delta.DeleteChains.Add(chain);
            }
        }
        plan.Transaction = NftScript.Render(delta);
        plan.Image = this;
        return plan;
    }

    /// <summary>Records that the kernel now holds what <paramref name="plan"/> described.</summary>
    public void Commit(DataplanePlan plan)
    {
        if (!ReferenceEquals(plan.Image, this))
        {
            throw new InvalidOperationException("the plan belongs to another image");
        }
        Apply(_services, plan.Services);
        Apply(_links, plan.Links);
        Apply(_flows, plan.Flows);
        Remember(_serviceInputs, plan.Services, plan.ServiceInputs);
        Remember(_linkInputs, plan.Links, plan.LinkInputs);
        Remember(_flowInputs, plan.Flows, plan.FlowInputs);
        foreach (var (chain, count) in plan.ChainRefs)
        {
            if (count > 0)
            {
                _chainRefs[chain] = count;
            }
            else
            {
                _chainRefs.Remove(chain);
            }
        }
        plan.Image = null;
    }

    private static void Apply(Dictionary<string, NftFragment> committed, Dictionary<string, NftFragment?> planned)
    {
        foreach (var (name, fragment) in planned)
        {
            if (fragment is null)
            {
                committed.Remove(name);
            }
            else
            {
                committed[name] = fragment;
            }
        }
    }

    private static void Remember<T>(Dictionary<string, T> inputs, Dictionary<string, NftFragment?> planned, Dictionary<string, T> given)
    {
        foreach (var (name, fragment) in planned)
        {
            if (fragment is not null && given.TryGetValue(name, out var input))
            {
                inputs[name] = input;
            }
            else
            {
                inputs.Remove(name);
            }
        }
    }

    /// <summary>The whole table as this image (with <paramref name="pending"/> applied, if given) describes it.</summary>
    public NftRuleset ToRuleset(DataplanePlan? pending = null)
    {
        static IEnumerable<NftFragment> Current(Dictionary<string, NftFragment> committed, Dictionary<string, NftFragment?>? planned)
            => committed.Where(c => planned is null || !planned.ContainsKey(c.Key)).Select(c => c.Value)
                .Concat((planned?.Values ?? Enumerable.Empty<NftFragment?>()).OfType<NftFragment>());
        return DataplaneCompiler.Merge(Current(_links, pending?.Links).Concat(Current(_services, pending?.Services)).Concat(Current(_flows, pending?.Flows)));
    }
}

/// <summary>A planned change of a <see cref="DataplaneImage"/>: the transaction and what to record once it succeeded.</summary>
public sealed class DataplanePlan
{
    internal Dictionary<string, NftFragment?> Services { get; } = new(StringComparer.Ordinal);
    internal Dictionary<string, NftFragment?> Links { get; } = new(StringComparer.Ordinal);
    internal Dictionary<string, NftFragment?> Flows { get; } = new(StringComparer.Ordinal);
    internal Dictionary<string, int> ChainRefs { get; } = new(StringComparer.Ordinal);
    internal Dictionary<string, DataplaneService> ServiceInputs { get; } = new(StringComparer.Ordinal);
    internal Dictionary<string, DataplaneLink> LinkInputs { get; } = new(StringComparer.Ordinal);
    internal Dictionary<string, DataplaneFlow> FlowInputs { get; } = new(StringComparer.Ordinal);
    internal Dictionary<string, IReadOnlyList<string>> ChainRules { get; } = new(StringComparer.Ordinal);
    internal DataplaneImage? Image { get; set; }

    /// <summary>The incremental transaction (empty when nothing changes).</summary>
    public NftTransaction Transaction { get; internal set; } = new(full: false);
}
