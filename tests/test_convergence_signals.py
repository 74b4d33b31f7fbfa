"""scripts/convergence_signals.py probes the tasks that label users; a cvr task labels (user, target) pairs, which a
probe of the user representation alone cannot score, so it is named and left out (it was read as a multiclass task
whose classes were the target ids)."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probes_leave_out_pair_labelled_tasks(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repository first
    generator, signals = load_script("generate_synthetic"), load_script("convergence_signals")
    generator.generate(tmp_path, "synth", users=60, items=40, targets=12, topics=4, min_len=3, max_len=10,
                       tasks="age,click,buy:cvr", seed=0)
    probes = signals.Probes(str(tmp_path), "synth", seed=0)
    assert {task: kind for task, (kind, _) in probes.tasks.items()} == {"age": "multiclass", "click": "recommendation"}
    assert "no probe for task 'buy' (cvr" in capsys.readouterr().out
