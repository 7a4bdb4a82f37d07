import subprocess
import sys


def test_the_pipeline_mode_never_loads_textual():
    # What `rollup run --no-tui` and every non-terminal run import, in a fresh interpreter.
    code = (
        "import sys, rollup.cli, rollup.commands, rollup.run.rollout, rollup.output.status;"
        "print('textual' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_rollup_help_does_not_pay_for_the_drivers():
    code = "import sys, rollup.cli; print('XenAPI' in sys.modules or 'libvirt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
