"""The benchmark CLI: a tiny supernet run writes its results; a missing GPU is a clear error.

No timing is asserted (speed is what the benchmark prints, not what a test checks).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.__main__ import main


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_supernet_benchmark_writes_both_forms(tmp_path, capsys):
    assert main(["supernet", "--dag-nodes", "2,3", "--sizes", "5", "--batches", "2", "--modes", "forward,inner",
                 "--repeats", "1", "--peak-size", "128", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[inner]" in out and "[forward]" in out
    (path,) = tmp_path.glob("supernet-dag-*.json")
    data = json.loads(path.read_text())
    assert data["machine"]["torch-threads"] == 1
    assert (data["space"], data["device"], data["repeats"], data["channels"]) == ("dag", "cpu", 1, 8)
    rows = data["rows"]
    assert [(r["mode"], r["nodes"]) for r in rows] == [("forward", 2), ("forward", 3), ("inner", 2), ("inner", 3)]
    for r in rows:
        assert (r["size"], r["batch"]) == (5, 2) and "note" not in r  # nothing skipped under the default cap
        assert r["fused-runs"] == r["reference-runs"] == 1  # one timed call each after the warm-up
        # the ratios are the quotients of the times they stand beside, in wall and CPU time
        assert r["ratio"] == pytest.approx(r["reference-s"] / r["fused-s"])
        assert r["cpu-ratio"] == pytest.approx(r["reference-cpu-s"] / r["fused-cpu-s"])
        times = ("fused-s", "reference-s", "fused-cpu-s", "reference-cpu-s")
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in times)
        assert all(math.isfinite(r[k]) and r[k] >= 0 for k in ("fused-peak-mb", "reference-peak-mb"))
    # the printed tables have each row: size, B, P, the times, the ratio (3 significant digits)
    table_rows = [line.split() for line in out.splitlines() if line.split()[:2] == ["5", "2"]]
    assert len(table_rows) == len(rows)
    for cols, r in zip(table_rows, rows):
        assert int(cols[2]) == r["nodes"] and float(cols[5]) == pytest.approx(r["ratio"], rel=5e-3)


@pytest.mark.parametrize("mode", ["forward", "backward", "inner"])
def test_the_two_forms_the_benchmark_times_compute_the_same_step(mode):
    # a speed ratio means something only if both sides do the same work: same loss, same gradients
    from benchmarks.supernet import build_pair, make_step

    models = build_pair("dag", 3, 4, 6, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 1, 6, 6, generator=g), torch.randint(0, 10, (3,), generator=g)
    target = [torch.randn(a.shape, generator=g) for a in models["fused"].arch_parameters()]
    fused, reference = (make_step(mode, models[side], x, y, target)() for side in ("fused", "reference"))
    for a, b in zip(*(v if isinstance(v, tuple) else (v,) for v in (fused, reference)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_reference_is_skipped_past_its_cap(tmp_path):
    main(["supernet", "--dag-nodes", "2,8", "--sizes", "5", "--batches", "1", "--modes", "forward", "--repeats", "1",
          "--ref-cap", "0", "--no-memory", "--peak-size", "64", "--results", str(tmp_path)])
    (path,) = tmp_path.glob("supernet-dag-*.json")
    first, second = json.loads(path.read_text())["rows"]
    assert first["reference-runs"] == 1 and "ran once" in first["note"]  # over the cap: one call only
    assert second["reference-runs"] == 0 and second["reference-s"] is None and "skipped" in second["note"]
    assert second["fused-runs"] == 1
    # nor is it run again to have its FLOPs counted; the fused form is
    assert all("reference-flops" not in r and r["fused-flops"] > 0 for r in (first, second))


def test_flop_count_of_a_linear_and_a_grouped_conv_is_the_hand_formula():
    from benchmarks.supernet import count_flops

    torch.manual_seed(0)
    linear, x = torch.nn.Linear(5, 3), torch.randn(4, 5, requires_grad=True)
    assert count_flops(lambda: linear(x)) == 2 * 4 * 5 * 3  # a multiply-add is 2; the bias add is not counted
    # backward: grad_input and grad_weight are each a product of the forward's size
    assert count_flops(lambda: linear(x).sum().backward()) == 3 * 2 * 4 * 5 * 3
    for groups in (1, 2, 6):  # dense, grouped, depthwise (torch alone counts grad_weight groups times over)
        conv, x = torch.nn.Conv2d(6, 6, 3, stride=2, groups=groups), torch.randn(2, 6, 9, 9, requires_grad=True)
        forward = 2 * 2 * 6 * (6 // groups) * 3 * 3 * 4 * 4  # 2 N C_out (C_in / groups) k k H_out W_out
        assert count_flops(lambda: conv(x)) == forward
        assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_quick_supernet_benchmark_writes_achieved_flops_beside_the_measured_peak(tmp_path, capsys):
    assert main(["supernet", "--quick", "--modes", "inner", "--no-memory", "--peak-size", "128",
                 "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "of peak" in out
    (path,) = tmp_path.glob("supernet-dag-*.json")
    data = json.loads(path.read_text())
    peak = data["peak"]
    assert data["quick"] is True and peak["threads"] == data["machine"]["torch-threads"] == 1
    assert peak["matmul"]["flops"] == 2 * 128**3  # counted by the same counter as the steps
    for op in ("matmul", "conv"):
        assert peak[op]["gflops"] == pytest.approx(peak[op]["flops"] / peak[op]["best-s"] / 1e9)
    assert peak["peak-gflops"] == max(peak["matmul"]["gflops"], peak["conv"]["gflops"])
    assert [(r["mode"], r["nodes"], r["size"]) for r in data["rows"]] == [("inner", 8, 8), ("inner", 16, 8)]
    for r in data["rows"]:
        for side in ("fused", "reference"):  # both timed in full: both counted
            assert isinstance(r[f"{side}-flops"], int) and r[f"{side}-flops"] > 0
            assert r[f"{side}-gflops"] == pytest.approx(r[f"{side}-flops"] / r[f"{side}-s"] / 1e9)
            assert r[f"{side}-of-peak"] == pytest.approx(r[f"{side}-gflops"] / peak["peak-gflops"])


def test_no_flops_skips_the_counting_and_the_peak(tmp_path):
    main(["supernet", "--dag-nodes", "2", "--sizes", "5", "--batches", "1", "--modes", "forward", "--repeats", "1",
          "--no-memory", "--no-flops", "--results", str(tmp_path)])
    (path,) = tmp_path.glob("supernet-dag-*.json")
    data = json.loads(path.read_text())
    assert data["peak"] is None and not any(k.endswith(("flops", "of-peak")) for k in data["rows"][0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(SystemExit, match="no CUDA device"):
        main(["supernet", "--device", "cuda", "--quick"])


def test_dp_benchmark_quick_writes_both_steps_side_by_side(tmp_path, capsys):
    from benchmarks.dp import main as dp_main

    assert dp_main(["--quick", "--threads", "1", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "private/plain" in out and "device cpu" in out
    (path,) = tmp_path.glob("dp-*.json")
    data = json.loads(path.read_text())
    assert data["quick"] is True and data["device"] == "cpu"
    assert [(r["nodes"], r["batch"]) for r in data["rows"]] == [(4, 1), (4, 4)]
    for r in data["rows"]:
        assert r["plain-s"] > 0 and r["private-s"] > 0 and r["ratio"] == pytest.approx(r["private-s"] / r["plain-s"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_dp_benchmark_on_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    from benchmarks.dp import main as dp_main

    with pytest.raises(SystemExit, match="no CUDA device"):
        dp_main(["--quick", "--device", "cuda", "--results", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_intervals_agree_with_scipy():
    from scipy import stats

    from benchmarks.common import t_interval, wilson

    for k, n in ((0, 4), (3, 10), (10, 10)):
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert wilson(k, n) == pytest.approx((ci.low, ci.high), rel=1e-4, abs=1e-6)  # z = 1.96, scipy: 1.95996...
    values = [3.0, 5.5, 4.25, 9.0]
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 4, scale=stats.sem(values))
    assert t_interval(values) == pytest.approx((sum(values) / 4, lo, hi))


def test_adra_benchmark_on_cuda_without_a_gpu_is_a_clear_error():
    from benchmarks.adra import main as adra_main

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit, match="no CUDA device"):
        adra_main(["--device", "cuda"])


def test_adra_benchmark_scores_every_sample_of_a_capture_with_set_keys():
    import argparse

    from benchmarks.adra import run_nodes

    args = argparse.Namespace(dataset="digits", captures=1, solvers="lm", reference="adam", reference_iterations=0,
                              seed=0, budget=0.0,
                              set=["alpha-batch-size=2", "local-steps=2", "adra-iterations=2", "adra-restarts=1"])
    (row,) = run_nodes(2, args, torch.device("cpu"))
    # one capture of 2 local steps of 2 D^alpha samples: its time once, a score per sample
    assert len(row["wall"]) == len(row["cpu"]) == len(row["theta"]) == 1
    assert len(row["identified"]) == len(row["identified-dataset"]) == len(row["label"]) == len(row["psnr"]) == 4
    assert len(row["success"]) == 4
    # success is identified, or recognisable: never less than identified
    assert all(s or not i for s, i in zip(row["success"], row["identified"]))
    assert row["theta"] == ["wire θ_t1"]


def test_adra_benchmark_says_what_the_attacker_knew_of_theta():
    import argparse

    from benchmarks.adra import run_nodes
    from benchmarks.adra_table import report

    args = argparse.Namespace(dataset="digits", captures=1, solvers="lm", reference="lm", reference_iterations=0,
                              seed=0, budget=0.0, set=["knows-weights=false", "theta-prior=init",
                                                       "adra-iterations=2", "adra-restarts=1"])
    (row,) = run_nodes(2, args, torch.device("cpu"))
    assert row["theta"] == ["server θ_0 (exact: round 1)"]
    assert "server θ_0 (exact: round 1)" in report([row], "lm")
    # a refused capture's match is NaN, null in the written JSON: the table reads both
    assert "server θ_0" in report([{**row, "match": [None], "truth-match": [math.nan]}], "lm")


def test_adra_benchmark_later_round_starts_from_the_fedavg_of_the_earlier_rounds(monkeypatch):
    import argparse

    from benchmarks.adra import EXPERIMENT, Captures, run_nodes
    from fednas.config import parse_config
    from fednas.federated import client_train, initial_arrays

    cfg = parse_config({**EXPERIMENT, "dataset": "digits", "dag-nodes": 2, "num-server-rounds": 2})
    caps = Captures(cfg, 2, round=2, warm_steps=3)
    # the reference: round 1 of both clients by hand, 3 local steps each, weighted by num-examples
    warm = cfg.replace(local_steps=3, num_server_rounds=1)
    replies = [client_train(warm, warm.search, initial_arrays(cfg), partition_id=i, num_clients=2, server_round=1)
               for i in range(2)]
    n = [float(r.metrics["num-examples"]) for r in replies]
    for key, value in caps.arrays.items():
        want = sum(w * torch.as_tensor(r.arrays[key]).double() for w, r in zip(n, replies)) / sum(n)
        torch.testing.assert_close(value.double(), want, rtol=1e-5, atol=1e-6)
    # the warm-up rounds are cached: another process of the seed with other attack settings reads them
    import benchmarks.adra as bench

    def no_federation(*a, **k):
        raise AssertionError("the cached warm-up arrays should have been read")

    monkeypatch.setattr(bench, "run_federation", no_federation)
    again = Captures(cfg.replace(knows_weights=False, theta_prior="init"), 2, round=2, warm_steps=3)
    for key, value in caps.arrays.items():
        torch.testing.assert_close(again.arrays[key], value, rtol=0, atol=0)
    with pytest.raises(AssertionError, match="cached warm-up"):  # a changed client setting is a new key
        Captures(cfg.replace(alpha_lr=1e-3), 2, round=2, warm_steps=3)
    monkeypatch.undo()
    cap, _ = caps[1]
    assert cap.round == 2 and cap.id == "r002-n1" and cap.train_config["server-round"] == 2
    theta_0 = {k: v for k, v in initial_arrays(cfg).items() if not k.startswith("alpha")}
    assert any(not torch.allclose(torch.as_tensor(cap.theta_t1[k]), theta_0[k]) for k in theta_0)  # θ has moved from θ_0

    args = argparse.Namespace(dataset="digits", captures=1, solvers="lm", reference="lm", reference_iterations=0,
                              seed=0, budget=0.0, round=2, warm_steps=3,
                              set=["knows-weights=false", "theta-prior=init", "adra-iterations=2", "adra-restarts=1"])
    (row,) = run_nodes(2, args, torch.device("cpu"))
    assert row["theta"] == ["server θ_0 (prior: round 2)"]
    assert row["truth-match"][0] > 1e-6  # θ_0 is no longer the client's θ: the replay is off at the truth


def test_warm_key_changes_with_the_federation_not_with_the_attack():
    from benchmarks.adra import EXPERIMENT, warm_key
    from fednas.config import parse_config

    cfg = parse_config({**EXPERIMENT, "dataset": "digits", "dag-nodes": 2})
    key = warm_key(cfg, 2)
    assert warm_key(cfg.replace(knows_weights=False, surrogate_draws=4), 2) == key
    assert warm_key(cfg, 3) != key
    for change in ({"alpha_lr": 1e-3}, {"local_steps": 2}, {"seed": 1}, {"num_server_rounds": 2}):
        assert warm_key(cfg.replace(**change), 2) != key, change


def test_adra_benchmark_measures_theta_spread_when_theta_is_unknown():
    import argparse

    from benchmarks.adra import run_nodes
    from benchmarks.adra_table import spread_lines

    base = dict(dataset="digits", captures=1, solvers="lm", reference="lm", reference_iterations=0, seed=0,
                budget=0.0, spread=8)
    sets = ["adra-iterations=2", "adra-restarts=1"]
    (row, *_) = run_nodes(2, argparse.Namespace(**base, set=sets + ["knows-weights=false", "surrogate-draws=3"]),
                          torch.device("cpu"))
    (spread,) = row["spread"]
    assert spread["draws"] == 3 and spread["images"] == 8 and spread["chance"] == 1 / 8
    assert 0.0 <= spread["retrieval"] <= 1.0 and spread["ratio"] > 0
    assert "3 θ draws as across 8 image sets" in spread_lines([row])[0]
    (known, *_) = run_nodes(2, argparse.Namespace(**base, set=sets), torch.device("cpu"))
    assert "spread" not in known  # one θ: nothing to spread over


def test_adra_benchmark_spread_only_measures_each_seed_and_trains_nothing(tmp_path, capsys):
    import json

    from benchmarks.adra import main as adra_main

    adra_main(["--dataset", "digits", "--dag-nodes", "2", "--spread-only", "--spread", "6", "--seeds", "0,1",
               "--results", str(tmp_path), "--set", "knows-weights=false", "--set", "surrogate-draws=3"])
    (path,) = tmp_path.glob("adra-spread-*.json")
    (row,) = json.loads(path.read_text())["rows"]
    assert row["solver"] == "spread" and row["seed"] == [0, 1] and len(row["spread"]) == 2
    assert all(s["draws"] == 3 and s["images"] == 6 for s in row["spread"])
    assert "identified" not in row  # no capture was attacked
    out = capsys.readouterr().out
    assert "P=2 seed 0: ratio" in out and "P=2 seed 1: ratio" in out and "2 seed(s)" in out
    # one file a seed, as separate processes write them, merges back into the same rows
    (tmp_path / "parts").mkdir()
    for seed in ("0", "1"):
        adra_main(["--dataset", "digits", "--dag-nodes", "2", "--spread-only", "--spread", "6", "--seeds", seed,
                   "--results", str(tmp_path / "parts" / seed), "--set", "knows-weights=false",
                   "--set", "surrogate-draws=3"])
    parts = sorted((tmp_path / "parts").glob("*/adra-spread-*.json"))
    adra_main(["--merge", *map(str, parts), "--results", str(tmp_path / "merged")])
    (merged,) = (tmp_path / "merged").glob("adra-spread-*.json")
    (again,) = json.loads(merged.read_text())["rows"]
    assert again["seed"] == [0, 1] and again["spread"] == row["spread"]
    with pytest.raises(SystemExit, match="a seed is in more than one file"):
        adra_main(["--merge", str(parts[0]), str(parts[0]), "--results", str(tmp_path / "merged")])


def test_adra_benchmark_spread_only_reads_sampled_theta_paths_of_a_k_step_round_per_step(tmp_path, capsys):
    import json

    from benchmarks.adra import main as adra_main

    adra_main(["--dataset", "digits", "--dag-nodes", "2", "--spread-only", "--spread", "5", "--results", str(tmp_path),
               "--set", "local-steps=2", "--set", "alpha-optimizer=adam", "--set", "theta-between-steps=sampled",
               "--set", "theta-paths=3"])  # θ known (the wire): only its path between the two steps is drawn
    (path,) = tmp_path.glob("adra-spread-*.json")
    ((spread,),) = [row["spread"] for row in json.loads(path.read_text())["rows"]]
    assert spread["draws"] == 3 and spread["images"] == 5 and len(spread["per-step"]) == 2
    assert all(0.0 <= s["retrieval"] <= 1.0 and s["images"] == 5 for s in spread["per-step"])
    out = capsys.readouterr().out
    assert "  step 2 alone: ratio" in out and "step 2 alone (the other steps' images known)" in out


def test_adra_benchmark_spread_passes_over_a_capture_that_is_weight_decay_alone(tmp_path, monkeypatch):
    import json

    from attacks.adra.attack import ADRA
    from attacks.adra.client_model import CaptureError
    from benchmarks.adra import main as adra_main

    real = ADRA.problem

    def first_is_weight_decay(self, capture, knowledge):  # as the attack refuses a zero-gradient capture
        if capture.node_id == 0:
            raise CaptureError("delta-alpha is the client's weight decay alone")
        return real(self, capture, knowledge)

    monkeypatch.setattr(ADRA, "problem", first_is_weight_decay)
    adra_main(["--dataset", "digits", "--dag-nodes", "2", "--spread-only", "--spread", "4", "--captures", "2",
               "--results", str(tmp_path), "--set", "knows-weights=false", "--set", "surrogate-draws=2"])
    (path,) = tmp_path.glob("adra-spread-*.json")
    (row,) = json.loads(path.read_text())["rows"]
    assert row["spread"][0]["draws"] == 2  # measured on the round through its second capture
    with pytest.raises(SystemExit, match="weight decay alone"):  # one capture, and it carries nothing
        adra_main(["--dataset", "digits", "--dag-nodes", "2", "--spread-only", "--spread", "4", "--captures", "1",
                   "--results", str(tmp_path), "--set", "knows-weights=false", "--set", "surrogate-draws=2"])


def test_adra_benchmark_spread_only_with_theta_known_is_refused_before_any_work(tmp_path):
    from benchmarks.adra import main as adra_main

    with pytest.raises(SystemExit, match="knows-weights=false.*got knows-weights=True"):
        adra_main(["--dataset", "digits", "--dag-nodes", "2", "--spread-only", "--results", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_adra_benchmark_starts_no_capture_once_its_budget_is_spent(tmp_path, capsys):
    from benchmarks.adra import main as adra_main

    adra_main(["--dataset", "digits", "--dag-nodes", "2", "--captures", "3", "--solvers", "lm", "--budget", "1e-6",
               "--results", str(tmp_path), "--set", "adra-iterations=2", "--set", "adra-restarts=1"])
    (path,) = tmp_path.glob("adra-cpu-*.json")
    import json

    (row,) = [r for r in json.loads(path.read_text())["rows"] if r["solver"] == "lm"]
    assert len(row["wall"]) == 1  # the first capture always runs; the spent budget stops the other two
    assert len(row["identified"]) == 1
    # θ known and one SGD step: the replay is exact, so the client's own sample explains Δα to rounding
    assert row["truth-match"][0] < 1e-8 and math.isfinite(row["match"][0])
    # how near a read must come for the whole-dataset check, beside the table and in the record
    rival = json.loads(path.read_text())["args"]["nearest-other-psnr"]
    assert rival["images"] == 1797 and rival["q10"] <= rival["median"] <= rival["q90"]
    assert f"nearest other image is at PSNR {rival['median']:.1f} dB" in capsys.readouterr().out


def test_adra_benchmark_compares_the_inverse_with_the_search_beside_the_nulls(tmp_path, capsys):
    from benchmarks.adra import main as adra_main

    adra_main(["--dataset", "digits", "--dag-nodes", "3", "--captures", "2", "--solvers", "inverse,lm",
               "--reference", "lm", "--seeds", "0,1", "--results", str(tmp_path), "--set", "adra-iterations=2",
               "--set", "adra-restarts=1", "--set", "adra-inverse-pairs=64", "--set", "adra-inverse-epochs=2",
               "--set", f"adra-cache-dir={tmp_path / 'cache'}"])
    import json

    (path,) = tmp_path.glob("adra-cpu-*.json")
    rows = {r["solver"]: r for r in json.loads(path.read_text())["rows"]}
    assert set(rows) == {"inverse", "lm", "null: aux-random", "null: aux-mean"}
    for row in rows.values():  # the same captures of both seeds, one cluster per capture
        assert sorted(set(row["capture"])) == ["s0-r001-n0", "s0-r001-n1", "s1-r001-n0", "s1-r001-n1"]
    # one inverse per round and seed: trained for the first capture of each seed, read after
    assert sum(1 for t in rows["inverse"]["train"] if t > 0) == 2
    # the class-mean null names the true label by construction (a refused capture counts as missed)
    refused = [m is None for m in rows["lm"]["match"]]
    assert [lab or no for lab, no in zip(rows["null: aux-mean"]["label"], refused)] == [True] * 4
    # the same rows split into one file per seed, as separate processes write them, merge back into them
    payload = json.loads(path.read_text())
    parts = []
    for seed in (1, 0):
        rows_s = []
        for r in payload["rows"]:
            keep = [c.startswith(f"s{seed}-") for c in r["capture"]]
            rows_s.append({k: [x for x, ok in zip(v, keep) if ok] if isinstance(v, list) and len(v) == len(keep)
                           else v for k, v in r.items()})
        part = tmp_path / f"seed{seed}.json"
        part.write_text(json.dumps({**payload, "args": {**payload["args"], "seeds": str(seed)}, "rows": rows_s}))
        parts.append(part)
    out = tmp_path / "merged"
    capsys.readouterr()
    assert adra_main(["--merge", str(parts[1]), str(parts[0]), "--results", str(out)]) == 0
    assert "nearest other image is at PSNR" in capsys.readouterr().out  # the rival line, as the runs printed it
    (merged,) = out.glob("adra-merged-*.json")
    assert json.loads(merged.read_text())["rows"] == payload["rows"]
    with pytest.raises(SystemExit, match="capture s0-r001-n0 is in both"):
        adra_main(["--merge", str(parts[1]), str(parts[1]), "--results", str(out)])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**payload, "args": {**payload["args"], "captures": 9}}))
    with pytest.raises(SystemExit, match="other.json has captures = 9"):
        adra_main(["--merge", str(parts[0]), str(other), "--results", str(out)])


def test_an_unknown_adra_benchmark_solver_is_refused_before_any_work():
    from benchmarks.adra import main as adra_main

    with pytest.raises(SystemExit, match="unknown 'gauss'"):
        adra_main(["--solvers", "inverse,gauss"])


def test_adra_report_rates_the_captures_that_carry_information_apart():
    from benchmarks.adra_table import informative, report

    nan = float("nan")
    attack = {"nodes": 16, "solver": "inverse", "capture": ["a", "b", "c", "d"], "match": [0.1, nan, 0.2, None],
              "identified-dataset": [True, False, False, False], "identified": [True, False, True, False],
              "success": [True, False, True, False], "label": [True, False, True, True], "psnr": [18.0, 15.0],
              "wall": [1.0] * 4, "cpu": [1.0] * 4, "theta": ["wire θ_t1"] * 4, "truth-match": [0.0] * 4}
    null = {"nodes": 16, "solver": "null: aux-mean", "capture": ["a", "b", "c", "d"],
            "identified-dataset": [False, True, True, False], "identified": [False] * 4, "label": [True] * 4,
            "psnr": [12.0]}
    assert informative(attack) == {"a", "c"}  # b and d were refused: no match
    text = report([attack, null], "inverse")
    lines = text.splitlines()
    attack_line = next(line for line in lines if line.split()[1:2] == ["inverse"])
    null_line = next(line for line in lines if "aux-mean" in line)
    assert "1/4 [" in attack_line and "1/2 [" in attack_line  # over all captures, then over a and c
    assert "2/4 [" in null_line and "1/2 [" in null_line  # the null over the attack's informative captures
