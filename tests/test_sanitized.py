"""The Python-level tests of every C type again, against a debug build of
the extension with AddressSanitizer and UndefinedBehaviorSanitizer.

The build happens in a clean copy of the tree, so the in-place release build
the rest of the suite uses is untouched. CPython itself is not instrumented:
libasan is preloaded and PYTHONMALLOC=malloc routes Python's allocations
through it, so use-after-free and overflows in the binding are caught.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests_support import clean_copy

SANITIZED_TESTS = ["tests/test_breaker.py", "tests/test_breaker_model.py", "tests/test_demo.py",
                   "tests/test_backoff.py", "tests/test_retry.py", "tests/test_timeout.py",
                   "tests/test_dedup.py", "tests/test_queues.py", "tests/test_regressions.py",
                   "tests/test_rate.py", "tests/test_bus.py", "tests/test_exposition_c.py",
                   "tests/test_hist.py", "tests/test_regressions_breaker.py",
                   "tests/test_regressions_queue.py", "tests/test_regressions_storage.py",
                   "tests/test_regressions_engine.py", "tests/test_boundary.py",
                   "tests/test_binding_errors.py", "tests/test_conventions.py",
                   "tests/test_one_way_boundary.py", "tests/test_speed_paths.py",
                   "tests/test_concepts_once.py", "tests/test_binding_conventions.py",
                   "tests/test_config_env.py", "tests/test_watch.py",
                   "tests/test_signatures.py", "tests/test_bulkhead.py",
                   "tests/test_bulkhead_model.py", "tests/test_rate_limiter.py",
                   "tests/test_rate_limiter_model.py", "tests/test_ratelimit_fastpath.py",
                   "tests/test_adaptive_lockstep.py", "tests/test_adaptive.py",
                   "tests/test_region.py", "tests/test_region_ratelimit.py",
                   "tests/test_region_review.py",
                   "tests/test_region_breaker.py",
                   "tests/test_region_dedup.py",
                   "tests/test_region_metrics.py",
                   "tests/test_region_bulkhead.py",
                   "tests/test_redis_dedup.py",
                   "tests/test_redis_breaker.py",
                   "tests/test_redis_ratelimit.py",
                   "tests/test_review_s23.py"]
# Subprocess-heavy tests that add minutes under ASan and no new C paths.
SKIPPED_UNDER_ASAN = "not million"


def libasan() -> str:
    path = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert os.path.isabs(path) and os.path.exists(path), f"libasan not found: {path!r}"
    return path


@pytest.mark.timeout(900)
def test_every_c_type_under_asan_and_ubsan(tmp_path: Path) -> None:
    src = clean_copy(tmp_path / "src")
    env = dict(os.environ, RESIL_SANITIZE="1", RESIL_DEBUG="1")
    subprocess.run([sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"], cwd=src,
                   env=env, check=True, capture_output=True, timeout=600)
    env = dict(os.environ, LD_PRELOAD=libasan(), PYTHONMALLOC="malloc",
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
               HYPOTHESIS_PROFILE="asan")
    tests = [t for t in SANITIZED_TESTS if (src / t).exists()]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "-k", SKIPPED_UNDER_ASAN, *tests], cwd=src, env=env,
                          capture_output=True, text=True, timeout=900)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert "runtime error" not in proc.stderr, tail  # UBSan reports
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and " failed" not in summary, tail
    assert int(summary.split(" passed")[0].split()[-1]) >= 150, summary  # the whole set ran
    print("under ASan/UBSan:", summary)
