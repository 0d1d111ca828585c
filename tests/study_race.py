"""Several processes asking one shared Optuna study for trials as fast as they can (no objective):
the race that used to leave a study with more trials than requested."""

import subprocess
import sys

WORKER = """
import sys, optuna
from benchmark.study_slots import StudyFull, cap_trials
from benchmark.tuning import finished_or_running, open_storage
optuna.logging.set_verbosity(optuna.logging.ERROR)
storage = open_storage(sys.argv[1])
study = optuna.create_study(study_name="race", storage=storage, load_if_exists=True)
cap_trials(study, storage, int(sys.argv[2]), finished_or_running)
print("ready", flush=True)
sys.stdin.readline()  # start together
try:
    while True:
        trial = study.ask()
        study.tell(trial, 0.0)
except StudyFull:
    pass
"""


def race(storage_url: str, trials: int, workers: int = 3) -> int:
    """How many trials the study holds after ``workers`` processes filled it to ``trials``."""
    import optuna

    from benchmark.tuning import open_storage

    optuna.create_study(study_name="race", storage=open_storage(storage_url), load_if_exists=True)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, storage_url, str(trials)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    return len(optuna.load_study(study_name="race", storage=open_storage(storage_url)).trials)
