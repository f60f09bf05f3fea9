using Relay.Core.Reconcile;

namespace Relay.Core.Tests.Reconcile;

public class BalancerSlotsTests
{
    [Fact]
    public void Repoint_PutsTheNewInstanceInTheLeavingOnesSlot()
        => Assert.Equal(["a", "new", "c"], BalancerSlots.Repoint(["a", "b", "c"], "b", "new").ToArray());

    [Fact]
    public void Repoint_ToAnInstanceAlreadyInTheBalancer_KeepsItsSlot_AndTheLeavingOnesGoes()
        => Assert.Equal(["a", "c"], BalancerSlots.Repoint(["a", "b", "c"], "b", "c").ToArray());

    [Fact]
    public void Repoint_FromAnInstanceWithoutASlot_AddsTheNewOneLast()
        => Assert.Equal(["a", "new"], BalancerSlots.Repoint(["a"], "gone", "new").ToArray());
}
