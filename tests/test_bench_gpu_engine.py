"""The prepared engine-against-diffusers benchmark (issue 15, part 1) runs on the tiny model while
it waits for a GPU session: both paths, one table row each, the engine's overhead and the cost
model's prediction beside them."""

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
    assert "learnt by the engine as none (eager)" in runs[4]  # no compile on the CPU: nothing to learn
    for row in rows[:4]:  # the cost model's prediction beside each measured run
        step_s, gib = (float(x) for x in row[9].split(","))
        assert step_s > 0 and gib == 0  # tiny runs on the CPU: no GPU memory


def test_the_phases_benchmark_times_each_way_of_encoding_and_decoding_on_the_tiny_model():
    output = run_tiny_gpu_script("bench_gpu_phases.py", ("--repeat", "1"))
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in output.splitlines()
            if line.startswith(("| encode |", "| decode |"))]
    assert [(row[0], row[2]) for row in rows] == [
        ("encode", "resident (gpu profile)"), ("encode", "streamed (text_encoder_offload)"),
        ("decode", "fp32"), ("decode", "bf16"), ("decode", "fp32 tiled")], output
    assert all(float(row[3]) > 0 for row in rows)  # measured seconds
    predicted = {row[2]: float(row[5].split()[0]) for row in rows if row[0] == "decode"}
    assert predicted["bf16"] < predicted["fp32"]  # the cost model's decode peak, beside each
