"""The comparison of pre-training methods (``pretrain_methods``): the methods file, validation before any
pre-training, the Table 2 / Table 3 logic on hand-made RunResults, and the command end to end on a tiny data set."""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

import pytest
from scipy import stats

from recbole_adaptssr.config import Config
from recbole_adaptssr.experiment import tables
from recbole_adaptssr.experiment.comparison import (check_methods, method_config, methods_table, resolve_method,
                                                    selected_methods)
from recbole_adaptssr.experiment.results import RunResult
from recbole_adaptssr.quick_start import run
from task_data import base_config, one_torch_thread, unit_files, write_task_dataset


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def result(method, task, seed, value, metric="acc", valid=None):
    return RunResult(model="AdaptSSR", dataset="tt", task=task, kind="multiclass", start_point=method, seed=seed,
                     valid={metric: value if valid is None else valid}, test={metric: value}, best_epoch=0,
                     valid_metric=metric)


# hand-made results: two tasks, three methods, three seeds (listed out of seed order on purpose)
VALUES = {
    ("none", "t1"): {1: 0.50, 2: 0.52, 3: 0.48},
    ("mlm", "t1"): {1: 0.55, 2: 0.56, 3: 0.53},
    ("adaptssr", "t1"): {1: 0.60, 2: 0.59, 3: 0.62},
    ("none", "t2"): {1: 0.10, 2: 0.12, 3: 0.11},
    ("mlm", "t2"): {1: 0.16, 2: 0.13, 3: 0.15},
    ("adaptssr", "t2"): {1: 0.14, 2: 0.15, 3: 0.13},
}


def hand_made():
    out = []
    for (method, task), per_seed in VALUES.items():
        for seed in (3, 1, 2):
            out.append(result(method, task, seed, per_seed[seed], metric="acc" if task == "t1" else "ndcg@10"))
    return out


# ------------------------------------------------------------------------------------------- tables.py
def test_improvement_is_relative_to_the_none_row_and_the_best_is_marked():
    rows = {(r["method"], r["task"]): r for r in tables.comparison_rows(hand_made())}
    for (method, task), per_seed in VALUES.items():
        mean = statistics.fmean(per_seed.values())
        base = statistics.fmean(VALUES[("none", task)].values())
        row = rows[(method, task)]
        assert row["mean"] == pytest.approx(mean) and row["std"] == pytest.approx(statistics.stdev(per_seed.values()))
        assert row["impr"] is None if method == "none" else row["impr"] == pytest.approx((mean - base) / base * 100)
    assert {t: m for (m, t), r in rows.items() if r["best"]} == {"t1": "adaptssr", "t2": "mlm"}
    assert [r["method"] for r in tables.comparison_rows(hand_made())][:2] == ["none", "none"]  # none first


def test_markdown_table2_layout_bold_best_and_percent():
    md = tables.comparison_markdown(hand_made(), labels={"mlm": "PeterRec", "none": "None"})
    lines = md.splitlines()
    assert lines[0] == "| method | t1 (acc, %) | Impr (%) | t2 (ndcg@10, %) | Impr (%) |"
    assert lines[2].startswith("| none | 50.00 ± 2.00 | - | 11.00 ± 1.00 | - |")
    assert lines[3].startswith("| mlm (PeterRec) | 54.67 ± 1.53 | 9.33 | **14.67 ± 1.53** | **33.33** |")
    assert lines[4].startswith("| adaptssr | **60.33 ± 1.53** | **20.67** | 14.00 ± 1.00 | 27.27 |")
    assert "relative improvement of the mean over the none row" in md
    assert "paired t-test (scipy.stats.ttest_rel)" in md and "Wilcoxon" not in md


def test_p_value_is_scipys_paired_t_test_against_the_best_other_method():
    sig = {e["task"]: e for e in tables.significance(hand_made(), "adaptssr", tests=("ttest", "wilcoxon"))}
    # t1: the best other method is mlm; pairs by seed 1, 2, 3 whatever the list order
    a = [VALUES[("adaptssr", "t1")][s] for s in (1, 2, 3)]
    b = [VALUES[("mlm", "t1")][s] for s in (1, 2, 3)]
    assert sig["t1"]["versus"] == "mlm" and sig["t1"]["seeds"] == [1, 2, 3] and sig["t1"]["n"] == 3
    assert sig["t1"]["ttest"]["pvalue"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert sig["t1"]["ttest"]["statistic"] == pytest.approx(stats.ttest_rel(a, b).statistic, rel=1e-12)
    assert sig["t1"]["wilcoxon"]["pvalue"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)
    # t2: adaptssr is not the best; it is still compared with the best other (mlm)
    a2 = [VALUES[("adaptssr", "t2")][s] for s in (1, 2, 3)]
    b2 = [VALUES[("mlm", "t2")][s] for s in (1, 2, 3)]
    assert sig["t2"]["versus"] == "mlm"
    assert sig["t2"]["ttest"]["pvalue"] == pytest.approx(stats.ttest_rel(a2, b2).pvalue, rel=1e-12)
    md = tables.comparison_markdown(hand_made(), tests=("ttest", "wilcoxon"))
    assert f"| t1 (acc) | mlm | 3 | " in md and f"{stats.ttest_rel(a, b).pvalue:.4f}" in md
    assert "Wilcoxon signed-rank test (scipy.stats.wilcoxon)" in md


def test_one_seed_gives_no_p_value_and_says_so():
    one = [r for r in hand_made() if r.seed == 1]
    sig = tables.significance(one, "adaptssr")
    assert all(e["n"] == 1 and e["ttest"]["pvalue"] is None for e in sig)
    assert sig[0]["ttest"]["note"] == "n = 1 < 2 paired seeds: no p-value"
    md = tables.comparison_markdown(one)
    assert "- (n = 1 < 2 paired seeds: no p-value)" in md
    assert "60.00 ± 0.00" in md  # std of one value is 0
    # only the seeds both methods ran are paired
    partial = [r for r in hand_made() if not (r.start_point == "mlm" and r.seed == 3)]
    entry = tables.significance(partial, "adaptssr")[0]
    assert entry["seeds"] == [1, 2] and entry["n"] == 2


def test_identical_values_and_missing_rows():
    same = [result(m, "t", s, 0.5) for m in ("none", "adaptssr") for s in (1, 2)]
    entry = tables.significance(same, "adaptssr")[0]
    assert entry["ttest"]["pvalue"] is None and "identical" in entry["ttest"]["note"]
    assert all(r["best"] for r in tables.comparison_rows(same))  # a tie: both are best
    no_none = [r for r in hand_made() if r.start_point != "none"]
    assert all(r["impr"] is None for r in tables.comparison_rows(no_none))
    assert "not available, no none row" in tables.comparison_markdown(no_none)
    alone = [r for r in hand_made() if r.start_point == "none"]
    assert tables.significance(alone, "adaptssr")[0]["note"] == "adaptssr did not run t1"


def test_smaller_is_better_metrics_flip_best_and_improvement():
    runs = [result("none", "t", 1, 0.40, "logloss"), result("adaptssr", "t", 1, 0.30, "logloss")]
    rows = {r["method"]: r for r in tables.comparison_rows(runs, smaller_metrics=("logloss",))}
    assert rows["adaptssr"]["best"] and not rows["none"]["best"]
    assert rows["adaptssr"]["impr"] == pytest.approx(25.0)


def test_table3_and_csv():
    rows = tables.pretrain_time_rows({"none": [], "mlm": [10.0, 14.0], "adaptssr": [7200.0]},
                                     {"mlm": ["mlm"], "adaptssr": ["mlm", "ssr"]})
    assert [r["method"] for r in rows] == ["mlm", "adaptssr"]
    assert rows[0]["mean_s"] == 12.0 and rows[0]["std_s"] == pytest.approx(statistics.stdev([10.0, 14.0]))
    md = tables.pretrain_time_markdown(rows)
    assert "| adaptssr | mlm, ssr | 2.000 ± 0.000 | 7200.0 ± 0.0 | 1 | - |" in md
    lines = list(csv.DictReader(tables.comparison_csv(hand_made()).splitlines()))
    assert len(lines) == 2 * len(VALUES) and {line["split"] for line in lines} == {"valid", "test"}
    best = [line for line in lines if line["split"] == "test" and line["best"] == "1"]
    assert [(line["method"], line["task"]) for line in best] == [("mlm", "t2"), ("adaptssr", "t1")]


def test_a_run_stopped_on_a_cap_while_improving_marks_its_cell_and_the_csv():
    runs = hand_made()
    capped = next(r for r in runs if (r.start_point, r.task, r.seed) == ("mlm", "t2", 2))
    capped.stopped_by, capped.epochs_run, capped.steps_run, capped.still_improving = "epoch_cap", 20, 100, True
    for r in runs:
        if r is not capped:
            r.stopped_by, r.epochs_run, r.steps_run, r.best_epoch = "patience", 14, 70, 4
    table = tables.comparison_markdown(runs, percent=False)
    mlm_row = next(line for line in table.splitlines() if line.startswith("| mlm"))
    assert mlm_row.count("†") == 1 and "0.1467 ± 0.0153†" in mlm_row
    assert "† 1 cell(s) hold a fine-tune run that stopped on a cap" in table
    assert "†" not in tables.comparison_markdown(hand_made(), percent=False)  # no capped run, no mark, no note
    lines = list(csv.DictReader(tables.comparison_csv(runs).splitlines()))
    marked = [(line["method"], line["task"], line["split"]) for line in lines if line["still_improving_runs"] != "0"]
    assert sorted(marked) == [("mlm", "t2", "test"), ("mlm", "t2", "valid")]
    cell = next(line for line in lines if (line["method"], line["task"], line["split"]) == ("mlm", "t2", "test"))
    # per seed, in the cell's seed order (3, 1, 2)
    assert (cell["stopped_by"], cell["epochs_run"], cell["best_epochs"]) == ("patience patience epoch_cap",
                                                                             "14 14 20", "4 4 0")


def test_table3_says_how_each_stage_stopped():
    stage = {"stopped_by": "patience", "epochs_run": 30, "steps_run": 210, "best_epoch": 19, "still_improving": False}
    capped = {**stage, "stopped_by": "epoch_cap", "epochs_run": 10, "steps_run": 70, "best_epoch": 9,
              "still_improving": True}
    pretrained = {"adaptssr": [{"stages": {"mlm": stage, "ssr": capped}}]}
    rows = tables.pretrain_time_rows({"adaptssr": [60.0]}, {"adaptssr": ["mlm", "ssr"]}, pretrained)
    md = tables.pretrain_time_markdown(rows)
    assert ("| adaptssr† | mlm, ssr | 0.017 ± 0.000 | 60.0 ± 0.0 | 1 | mlm: patience, 30 epochs, 210 steps, best 19; "
            "ssr†: epoch_cap, 10 epochs, 70 steps, best 9 |") in md
    assert "† a pre-training stage of this method stopped on a cap" in md
    lines = list(csv.DictReader(tables.pretrain_time_csv(rows).splitlines()))
    assert [(line["stage"], line["stopped_by"], line["still_improving_runs"]) for line in lines] == [
        ("mlm", "patience", "0"), ("ssr", "epoch_cap", "1")]


def test_older_run_records_read_back_with_default_stopping_fields():
    old = result("mlm", "t1", 1, 0.5).as_dict()
    for key in ("stopped_by", "epochs_run", "steps_run", "still_improving"):
        del old[key]
    again = RunResult(**old)
    assert (again.stopped_by, again.epochs_run, again.still_improving) == ("", -1, False)
    assert tables.comparison_rows([again])[0]["still_improving_runs"] == 0


# ------------------------------------------------------------------------------------------- methods
def test_packaged_methods_resolve_with_their_ablation_settings():
    table = methods_table()
    for name in ("none", "mlm", "adaptssr", "cl4srec", "clue", "ccl", "idicl", "coserec", "duorec", "barlow", "ptum"):
        assert name in table
    assert resolve_method("none", table).stages == []
    adaptssr = resolve_method("adaptssr", table)
    assert (adaptssr.stages, adaptssr.finetune_from, adaptssr.settings) == (["mlm", "ssr"], "ssr", {})
    assert resolve_method("adaptssr_no_hard_negative", table).settings == {"ssr_hard_negative": False}
    assert resolve_method("adaptssr_no_ranking", table).settings == {"ssr_ranking": False}
    assert resolve_method("adaptssr_no_ranking", table).stages == ["mlm", "ssr"]
    assert resolve_method("adaptssr_fixed_lambda", table).settings == {"ssr_lambda_mode": "fixed"}
    assert resolve_method("adaptssr_no_mlm", table).stages == ["ssr"]


@pytest.fixture
def task_data(tmp_path):
    return write_task_dataset(tmp_path / "data", "tt", tasks=("cls", "rec"), n_users=40, n_targets=16)


def test_a_method_file_of_ones_own_extends_and_replaces(task_data, tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text(
        "methods:\n"
        "  lam03: {extends: adaptssr_fixed_lambda, settings: {ssr_fixed_lambda: 0.3}, label: lambda 0.3}\n"
        "  mlm: {stages: [mlm], settings: {mlm_mask_ratio: 0.4}}\n")
    monkeypatch.setattr(sys, "argv", ["run", "--ssr_fixed_lambda=0.7", "--ssr_hard_negative=False"])
    config = Config(model="AdaptSSR", dataset="tt", config_dict=base_config(
        task_data, tmp_path, pretrain_methods="[lam03,mlm,adaptssr_fixed_lambda]",
        pretrain_methods_file=str(tmp_path / "mine.yaml")))
    methods = selected_methods(config)
    assert [m.name for m in methods] == ["lam03", "mlm", "adaptssr_fixed_lambda"]
    assert methods[0].settings == {"ssr_lambda_mode": "fixed", "ssr_fixed_lambda": 0.3}
    configs = check_methods(config, methods, None, [])
    lam03, mlm, fixed = (configs[m.name] for m in methods)
    assert (lam03["ssr_lambda_mode"], lam03["ssr_fixed_lambda"], lam03["pretrain_stages"]) == ("fixed", 0.3, ["mlm", "ssr"])
    assert fixed["ssr_fixed_lambda"] == 0.7  # not set by the method: the command line's value
    assert lam03["ssr_hard_negative"] is False  # the user's other settings still apply
    assert mlm["mlm_mask_ratio"] == 0.4 and mlm["pretrain_stages"] == ["mlm"]
    assert method_config(config, methods[2])["ssr_lambda_mode"] == "fixed"


@pytest.mark.parametrize("methods,extra_file,message", [
    ("[none,adaptsr]", None, r"unknown pre-training method 'adaptsr' in pretrain_methods; known: .*did you mean adaptssr"),
    ("[none,mine]", "mine: {stages: [nosuchtask]}",
     r"pre-training method 'mine' \(stages \['nosuchtask'\]\): unknown pretext task 'nosuchtask'"),
    ("[mine]", "mine: {stages: [mlm], settings: {mlm_mask_ratoi: 0.3}}",
     r"pre-training method 'mine': unknown setting\(s\): 'mlm_mask_ratoi' \(method 'mine' of .*mine\.yaml; did you "
     r"mean mlm_mask_ratio\b"),
    ("[mine]", "mine: {extends: adaptssr, settings: {ssr_lambda_mode: adaptiv}}",
     r"pre-training method 'mine': ssr_lambda_mode must be one of \['adaptive', 'fixed'\], got 'adaptiv'"),
    ("[mine]", "mine: {stages: [mlm], settings: {pretrain_stages: [ssr]}}", r"settings may not set \['pretrain_stages'\]"),
    ("[mine]", "mine: {stages: [mlm], finetune_from: ssr}", r"finetune_from 'ssr' is not one of its stages \['mlm'\]"),
    ("[none,none]", None, r"pretrain_methods lists \['none'\] more than once"),
])
def test_bad_methods_fail_before_any_pre_training(task_data, tmp_path, methods, extra_file, message):
    extra = {}
    if extra_file:
        (tmp_path / "mine.yaml").write_text(f"methods:\n  {extra_file}\n")
        extra["pretrain_methods_file"] = str(tmp_path / "mine.yaml")
    config_dict = base_config(task_data, tmp_path, pretrain_methods=methods, **extra)
    with pytest.raises(ValueError, match=message):
        run("AdaptSSR", "tt", config_dict=config_dict)
    assert not (tmp_path / "saved").exists()  # no run folder, nothing pre-trained


# ------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """none vs adaptssr (MLM + SSR, one epoch each), two tasks, two seeds, given on the command line."""
    tmp = tmp_path_factory.mktemp("comparison")
    data = write_task_dataset(tmp / "data", "tt", tasks=("cls", "rec"), n_users=40, n_targets=16)
    config_dict = base_config(data, tmp, mlm_epochs=1, ssr_epochs=1, finetune_epochs=2, pretrain_valid_ratio=0.2,
                              state="INFO")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setattr(sys, "argv", ["run", "--pretrain_methods=[none,adaptssr]", "--repeat=2"])
        out = run("AdaptSSR", "tt", config_dict=config_dict)
    return out, config_dict


def test_the_comparison_table_has_a_row_per_method_and_a_column_per_task(comparison):
    out, config_dict = comparison
    seeds = [config_dict["seed"], config_dict["seed"] + 1]
    assert sorted((r.start_point, r.task, r.seed) for r in out["runs"]) == sorted(
        (m, t, s) for m in ("none", "adaptssr") for t in ("cls", "rec") for s in seeds)
    lines = out["table"].splitlines()
    assert lines[0] == "| method | cls (acc, %) | Impr (%) | rec (ndcg@10, %) | Impr (%) |"
    assert [line.split(" |")[0] for line in lines[2:4]] == ["| none", "| adaptssr"]
    rows = {(r["method"], r["task"]): r for r in out["rows"]}
    for task, metric in (("cls", "acc"), ("rec", "ndcg@10")):
        values = {m: [r.test[metric] for r in sorted(out["runs"], key=lambda r: r.seed)
                      if (r.start_point, r.task) == (m, task)] for m in ("none", "adaptssr")}
        base, mine = statistics.fmean(values["none"]), statistics.fmean(values["adaptssr"])
        assert rows[("adaptssr", task)]["impr"] == pytest.approx((mine - base) / base * 100)
        cells = [c.strip().strip("*") for c in lines[3].strip().strip("|").split("|")]
        impr_cell = cells[2 if task == "cls" else 4]
        assert impr_cell == f"{(mine - base) / base * 100:.2f}"
        # the p-value: scipy's paired t-test of adaptssr vs the other method over the same seeds
        entry = next(e for e in out["significance"] if e["task"] == task)
        assert entry["versus"] == "none" and entry["n"] == 2 and entry["seeds"] == seeds
        if values["adaptssr"] != values["none"]:
            expected = stats.ttest_rel(values["adaptssr"], values["none"]).pvalue
            if expected == expected:  # nan when the two differences are equal
                assert entry["ttest"]["pvalue"] == pytest.approx(expected)
    assert any(e["ttest"]["pvalue"] is not None for e in out["significance"])
    # one epoch per stage: both stopped on their epoch cap while improving, which Table 3 marks
    assert "| adaptssr† | mlm, ssr |" in out["time_table"]
    assert "mlm†: epoch_cap, 1 epochs" in out["time_table"] and "ssr†: epoch_cap, 1 epochs" in out["time_table"]
    assert "| none |" not in out["time_table"]  # nothing pre-trained for none


def test_one_run_folder_with_a_folder_per_unit_and_atomic_files(comparison):
    out, _ = comparison
    run_dir = Path(out["run_dir"])
    # adaptssr's two stages are two units (each keeps its stage's end, where the next starts); none pre-trains nothing
    assert sorted(p.name for p in unit_files(run_dir, "pretrain_stage", "pretrain/*")) == [
        "mlm.last.pth", "mlm.pth", "ssr.last.pth", "ssr.pth"]
    runs = unit_files(run_dir, "finetune")
    assert len(runs) == 8 and len({p.parent for p in runs}) == 8  # 2 methods x 2 tasks x 2 seeds, a folder each
    assert sorted(Path(r.checkpoint) for r in out["runs"]) == runs
    assert all(Path(r.run_dir) == Path(r.checkpoint).parent for r in out["runs"])
    assert out["ok"] and json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    md = Path(out["files"]["md"]).read_text(encoding="utf-8")
    assert out["table"] in md and out["time_table"] in md
    saved = json.loads(Path(out["files"]["json"]).read_text(encoding="utf-8"))
    assert set(saved["table2"]) == {"valid", "test"} and saved["seeds"] == [2023, 2024]
    assert saved["methods"]["adaptssr"]["stages"] == ["mlm", "ssr"] and len(saved["runs"]) == 8
    assert saved["pretrain"]["adaptssr"][0]["seconds"] > 0 and not saved["pretrain"]["none"]
    lines = list(csv.DictReader(Path(out["files"]["csv"]).read_text(encoding="utf-8").splitlines()))
    assert len(lines) == 2 * 2 * 2  # methods x tasks x splits
    assert all(run["stopped_by"] in ("patience", "epoch_cap") and run["epochs_run"] >= 1 for run in saved["runs"])
    # how each stage and cell stopped, and Fig. 5's numbers from the comparison's own checkpoint
    assert "## Convergence" in md and out["convergence_table"] in md
    assert [(r["kind"], r["method"], r["name"]) for r in saved["convergence"]][:2] == [
        ("pretrain", "adaptssr", "mlm"), ("pretrain", "adaptssr", "ssr")]
    summary = list(csv.DictReader((run_dir / "similarity" / "similarity_summary.csv").read_text("utf-8").splitlines()))
    assert [(row["method"], row["kind"]) for row in summary] == [("adaptssr", "augmented"), ("adaptssr", "other_user")]
    assert int(summary[0]["n"]) == 40 and saved["similarity"]["summary"].endswith("similarity_summary.csv")
    assert "Like for like: warm-up: each method's own (paper)" in md
    assert not list(run_dir.rglob("*.tmp-*"))
    log = Path(out["log"]).read_text(encoding="utf-8")
    assert log.index("Table 2") < log.index("comparison written")  # logged before writing
    # the startup dump: each method's stages with the values they use, not RecBole's unused metrics
    assert "Pre-training method adaptssr, stage ssr:" in log and "metrics = ['Recall'" not in log


def bar_containers(ax) -> list:
    """The bars of a panel drawn by recbole_adaptssr.analysis.figures: one BarContainer per method."""
    from matplotlib.container import BarContainer

    return [c for c in ax.containers if isinstance(c, BarContainer)]


def bars_per_panel(figure) -> list:
    return [sum(len(c) for c in bar_containers(ax)) for ax in figure.axes]


def is_png(path) -> bool:
    return Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def is_svg(path) -> bool:
    text = Path(path).read_text(encoding="utf-8")
    return text.startswith("<?xml") and "<svg" in text and text.rstrip().endswith("</svg>")


def test_the_comparison_writes_its_figures_beside_the_tables(comparison):
    from recbole_adaptssr.analysis import figures

    out, _ = comparison
    run_dir = Path(out["run_dir"])
    for stem in ("table2", "similarity/similarity"):
        assert is_png(run_dir / f"{stem}.png") and is_svg(run_dir / f"{stem}.svg")
    assert Path(out["files"]["table2_png"]) == run_dir / "table2.png"
    assert not (run_dir / "fig4_ablation.png").exists()  # no ablation of AdaptSSR among none, adaptssr
    # Table 2's figure: one panel per metric (acc, ndcg@10), a bar per method on each task measured with it
    figure = figures.table2_figure(out["rows"])
    assert [ax.get_ylabel() for ax in figure.axes] == ["acc", "ndcg@10"] and bars_per_panel(figure) == [2, 2]
    heights = {(c.get_label(), ax.get_ylabel()): c.patches[0].get_height()
               for ax in figure.axes for c in bar_containers(ax)}
    rows = {(r["method"], r["metric"]): r for r in out["rows"]}
    assert heights == {key: pytest.approx(row["mean"]) for key, row in rows.items()}
    assert not list(run_dir.rglob("*.tmp-*"))


def test_fig4_is_drawn_when_adaptssr_and_its_ablations_are_compared(tmp_path):
    from recbole_adaptssr.analysis import figures

    runs = [result(method, task, seed, 0.1 * i + 0.01 * seed, metric="acc" if task == "t1" else "ndcg@10")
            for i, method in enumerate(("none", "adaptssr", "adaptssr_no_mlm", "adaptssr_fixed_lambda"))
            for task in ("t1", "t2", "t3") for seed in (1, 2)]
    rows = tables.comparison_rows(runs)
    assert figures.ablation_methods(["none", "adaptssr", "mlm", "adaptssr_no_mlm"]) == ["adaptssr", "adaptssr_no_mlm"]
    assert figures.ablation_methods(["none", "adaptssr_no_mlm"]) == []  # no AdaptSSR to compare with
    files = figures.write_comparison_figures(rows, str(tmp_path), labels={"adaptssr": "AdaptSSR"})
    assert sorted(files) == ["fig4_ablation_png", "fig4_ablation_svg", "table2_png", "table2_svg"]
    assert all(is_png(p) for k, p in files.items() if k.endswith("png"))
    assert all(is_svg(p) for k, p in files.items() if k.endswith("svg"))
    # Table 2: two metric panels (t1: acc; t2, t3: ndcg@10), four methods per task
    assert bars_per_panel(figures.table2_figure(rows)) == [4, 8]
    # Fig. 4: a panel per task, one bar per method of the ablation (not none), with its std as the error bar
    ablation = figures.ablation_figure(rows, ["adaptssr", "adaptssr_no_mlm", "adaptssr_fixed_lambda"])
    assert bars_per_panel(ablation) == [3, 3, 3] and [ax.get_ylabel() for ax in ablation.axes] == [
        "acc", "ndcg@10", "ndcg@10"]
    assert [c.get_label() for c in bar_containers(ablation.axes[0])] == [
        "adaptssr", "adaptssr_no_mlm", "adaptssr_fixed_lambda"]
    segment = bar_containers(ablation.axes[0])[0].errorbar.lines[2][0].get_segments()[0]  # the error bar's line
    row = next(r for r in rows if (r["method"], r["task"]) == ("adaptssr", "t1"))
    assert segment[1][1] - segment[0][1] == pytest.approx(2 * row["std"])


def test_pretrain_repeat_pre_trains_once_per_seed(tmp_path, task_data):
    config_dict = base_config(task_data, tmp_path, pretrain_methods=["mlm"], pretrain_repeat=True, repeat=2,
                              mlm_epochs=1, finetune_epochs=1, pretrain_valid_ratio=0.2, downstream_tasks=["cls"],
                              plots=False)
    out = run("AdaptSSR", "tt", config_dict=config_dict)
    run_dir = Path(out["run_dir"])
    assert not list(run_dir.rglob("*.png")) and not list(run_dir.rglob("*.svg"))  # plots: False
    assert (run_dir / "similarity" / "similarity.csv").is_file()  # the numbers all the same
    assert [p["seed"] for p in out["pretrain"]["mlm"]] == [2023, 2024]
    checkpoints = [Path(p["stages"]["mlm"]["checkpoint"]) for p in out["pretrain"]["mlm"]]
    assert all(c.is_file() for c in checkpoints) and checkpoints[0] != checkpoints[1]  # a unit per seed
    assert "| mlm (PeterRec)† | mlm |" in out["time_table"] and "| 2 |" in out["time_table"]
    assert "mlm†: epoch_cap/epoch_cap, 1/1 epochs" in out["time_table"]
    assert "| cls (acc) | - | 0 | - | - (adaptssr did not run cls) |" in out["table"]  # compare_method absent
