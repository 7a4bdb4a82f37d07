import json
from datetime import time

from rollup.codec import from_data, to_data
from rollup.model import (
    VM,
    Batch,
    Blocker,
    Check,
    Host,
    HostStep,
    Lock,
    Move,
    Plan,
    Policy,
    Pool,
    Window,
)


def test_a_plan_survives_the_journal_unchanged():
    host = Host("h1", "h1", "127.0.0.1", 10, 1, 5, "8.2.1", "3.2.1", True, True, True, "1")
    vm = VM(
        "v1",
        "vm",
        1,
        "Running",
        "h1",
        None,
        "",
        (Blocker("pci", "VM_HAS_PCI_ATTACHED", ("x",), "pci"),),
    )
    pool = Pool("p", "pool", "xenapi", "h1", False, (host,), (vm,), Lock("r", "c", 1, 1.0, 2.0))
    policy = Policy(window=Window(time(1, 0), time(5, 30)), host_order=("h1",))
    step = HostStep("h1", "h1", "8.2.1", (Move("v1", "vm", "h1", "h2", 1),), ())
    plan = Plan(
        pool,
        policy,
        (Batch(0, (step,), (("h1", 1),)),),
        (Check("x", "pass", "ok"),),
        (),
        (("v1", "h1"),),
        1,
        1,
        1.0,
    )
    assert from_data(Plan, json.loads(json.dumps(to_data(plan)))) == plan
