"""scripts/resume_campaigns.py: restore without overwriting, find running drivers, start a job
in its own session at low priority."""
import os
import signal
import sys
import time

import pytest

from tests.scripts import load_script

resume = load_script("resume_campaigns")


def test_restore_copies_what_is_missing_and_keeps_newer_files(tmp_path):
    packed, logs = tmp_path / "checkpoints", tmp_path / "logs"
    (packed / "rl" / "ant_vel_maml" / "checkpoints").mkdir(parents=True)
    (packed / "rl" / "ant_vel_maml" / "checkpoints" / "ckpt-120.index").write_text("packed")
    (packed / "rl" / "ant_vel_maml" / "progress.csv").write_text("itr\n120\n")
    os.utime(packed / "rl" / "ant_vel_maml" / "progress.csv", ns=(10**18, 10**18))
    (logs / "rl" / "ant_vel_maml" / "checkpoints").mkdir(parents=True)
    (logs / "rl" / "ant_vel_maml" / "checkpoints" / "ckpt-120.index").write_text("newer")
    planned = resume.restore(str(packed), str(logs), dry_run=True)
    assert not (logs / "rl" / "ant_vel_maml" / "progress.csv").exists()
    written = resume.restore(str(packed), str(logs))
    assert written == planned
    assert written == [str(logs / "rl" / "ant_vel_maml" / "progress.csv")]
    assert (logs / "rl" / "ant_vel_maml" / "checkpoints" / "ckpt-120.index").read_text() == "newer"
    assert os.stat(written[0]).st_mtime_ns == 10**18   # the packer sees the copy as current
    assert resume.restore(str(packed), str(logs)) == []


def test_running_pids_match_the_job_after_an_interpreter_options_allowed(tmp_path):
    proc = tmp_path / "proc"
    for pid, argv in {"11": [".venv/bin/python", "scripts/campaign.py", "train"],
                      "12": ["/usr/bin/python3", "/work/main/scripts/campaign.py", "train"],
                      "13": [".venv/bin/python", "scripts/campaign.py", "status"],
                      "14": ["sh", "-c", "exec nice -n 19 python scripts/campaign.py train"],
                      "15": [".venv/bin/python", "scripts/rl_campaign.py", "train"],
                      "16": ["python", "scripts/campaign.py", "train", "--runs=x"],
                      "17": ["scripts/campaign.py", "train"]}.items():
        (proc / pid).mkdir(parents=True)
        (proc / pid / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    (proc / "self").mkdir()
    assert resume.running_pids(("scripts/campaign.py", "train"), str(proc)) == [11, 12, 16]
    packer = next(j for j in resume.JOBS if j.name == "packer")
    assert resume.running_pids(packer.args, str(proc)) == []


def test_start_puts_a_job_in_its_own_session_at_nice_19_with_its_log(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "sleeper.py").write_text(
        "import sys, time\nprint('started', sys.argv[1:], flush=True)\ntime.sleep(60)\n")
    job = resume.Job("sleeper", ("scripts/sleeper.py", "train"), "logs/x/sleeper.log", 19)
    pid = resume.start(job, str(tmp_path), sys.executable)
    try:
        log = tmp_path / "logs" / "x" / "sleeper.log"
        for _ in range(100):
            if log.exists() and "started" in log.read_text():
                break
            time.sleep(0.1)
        assert "started ['train']" in log.read_text()
        assert os.getsid(pid) == pid != os.getsid(0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == 19
        assert resume.running_pids(job.args) == [pid]
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


def test_rl_workers_reach_the_rl_job_only(capsys, monkeypatch):
    monkeypatch.setattr(resume, "running_pids", lambda args: [])   # as on a fresh machine
    resume.main(["--dry_run", "--rl_workers=2"])
    out = capsys.readouterr().out
    assert "rl: would start scripts/rl_campaign.py train --num_workers=2 >>" in out
    assert "table1: would start scripts/campaign.py train >> logs/campaign/campaign.log" in out
    with pytest.raises(SystemExit):
        resume.main(["--dry_run", "--rl_workers=-1"])
    assert "--rl_workers must be >= 0" in capsys.readouterr().err


def test_unknown_job_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as stop:
        resume.main(["--jobs=table1,cheetah", "--dry_run"])
    assert stop.value.code == 2
    assert "--jobs: unknown cheetah" in capsys.readouterr().err
