import stat

from rollup.run.events import Message
from rollup.run.journal import Journal


def make(tmp_path):
    journal = Journal(tmp_path / "state")
    journal.create_run("r1", "lab", "pool-uuid", "/inv.yml", "ctl", {"batches": []})
    return journal


def test_the_state_directory_is_private_and_the_journal_file_too(tmp_path):
    journal = make(tmp_path)
    assert stat.S_IMODE(journal.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600


def test_the_last_transition_of_each_host_is_where_resume_starts(tmp_path):
    journal = make(tmp_path)
    journal.record_transition("r1", "h1", "h1", "checking", "pending")
    journal.record_transition("r1", "h1", "h1", "disabling", "checking")
    journal.record_transition("r1", "h2", "h2", "checking", "pending")
    states = journal.host_states("r1")
    assert states["h1"].state == "disabling" and states["h2"].state == "checking"


def test_the_journal_survives_reopening(tmp_path):
    journal = make(tmp_path)
    journal.record_transition("r1", "h1", "h1", "rebooting", "patching")
    journal.note("r1", "h1", "boot_mark_before", "123")
    journal.close()
    again = Journal(tmp_path / "state")
    assert again.host_states("r1")["h1"].state == "rebooting"
    assert again.recall("r1", "h1", "boot_mark_before") == "123"


def test_commands_from_another_process_are_taken_once(tmp_path):
    journal = make(tmp_path)
    Journal(tmp_path / "state").send_command("r1", "approve")
    assert journal.take_commands("r1") == [("approve", None)]
    assert journal.take_commands("r1") == []


def test_runs_are_found_by_a_prefix_of_their_id(tmp_path):
    journal = make(tmp_path)
    journal.record_event(Message("r1", level="info", text="hello"))
    assert journal.run("r").id == "r1"
    assert [e["text"] for _, e in journal.events("r1")] == ["hello"]
    assert journal.latest_unfinished().id == "r1"
    journal.set_run_state("r1", "completed", "completed", "ok")
    assert journal.latest_unfinished() is None
