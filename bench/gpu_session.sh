#!/usr/bin/env bash
# The GPU benchmarks of issue 15 on a lent GPU machine, in calls that fit its limits.
#
# Here first: .venv/bin/python scripts/gpu_bundle.py   (builds .gpu/, ~56 MiB, git-ignored)
# Then, through the device tool, each call carrying .gpu (the machine stays warm between them):
#   bash bench/gpu_session.sh phases 1.3b       # install, check, phases, the 1.3B engine run (~5 min)
#   bash bench/gpu_session.sh 5b 14b            # TI2V-5B 720p and 14B 480p (5 steps each, ~8 min)
# Each part's table lands in $OUT/<part>.md; paste them into bench/RESULTS.md with the GPU's name.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"

# The bundle: wheels the image lacks (into /tmp/site, kept while the machine stays warm), and
# imageio-ffmpeg without its binary, whose ffmpeg bench/pyav_ffmpeg.py stands in for.
if [ ! -f /tmp/site/.bundled ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpu/whl/*.whl || exit 1
  touch /tmp/site/.bundled
fi
export PYTHONPATH="/tmp/site:$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export IMAGEIO_FFMPEG_EXE="$PWD/bench/pyav_ffmpeg.py"
chmod +x bench/pyav_ffmpeg.py
python3 -c "import studio.core, diffusers, torchao, av, torch; print('stack:', torch.__version__, \
diffusers.__version__, torchao.__version__, torch.cuda.get_device_name())" 2>&1 | tee "$out/stack.txt" || exit 1

for part in "$@"; do
  case "$part" in
    phases) timeout 240 python3 bench/bench_gpu_phases.py ;;
    1.3b) timeout 300 python3 bench/bench_gpu_engine.py --models wan2.1-t2v-1.3b --steps 10 ;;
    5b) timeout 280 python3 bench/bench_gpu_engine.py --models wan2.2-ti2v-5b --steps 5 ;;
    14b) timeout 280 python3 bench/bench_gpu_engine.py --models wan2.1-t2v-14b --steps 5 ;;
    *) echo "unknown part $part (phases, 1.3b, 5b, 14b)"; exit 2 ;;
  esac 2>&1 | tee "$out/$part.md"
done
