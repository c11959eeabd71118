"""The prepared engine-against-diffusers benchmark (issue 15, part 1) runs on the tiny model while
it waits for a GPU session: both paths, one table row each, the engine's overhead beside them."""

from __future__ import annotations

from tests.test_long_video import run_tiny_gpu_script


def test_the_engine_benchmark_runs_plain_diffusers_and_the_engine_on_the_tiny_model():
    output = run_tiny_gpu_script("bench_gpu_engine.py", ())
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in output.splitlines()
            if line.startswith("| tiny |")]
    runs = [row[2] for row in rows]
    assert runs[:4] == ["plain diffusers", "engine, plain's settings", "engine, default speed, first task",
                        "engine, default speed"], output
    assert len({row[1] for row in rows}) == 1  # the same request shape on every path
    assert all("% step" in row[5] and "% e2e" in row[5] for row in rows[1:4])  # each engine run against plain
    assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows[:4])  # measured s per step, end to end
    assert "'attention': 'native'" in runs[4]  # the settings the default runs had (the CPU keeps the defaults)
