"""The resident-memory reader behind MemoryTracker and memory_usage_bytes."""

from resil.observe.memory import resident_bytes


def test_resident_bytes_grows_by_what_the_process_touches() -> None:
    import mmap

    before = resident_bytes()
    # Fresh pages from the kernel: a heap allocation may reuse pages a freed
    # one left resident, and then touching it grows nothing.
    blob = mmap.mmap(-1, 32 * 1024 * 1024)
    for i in range(0, len(blob), 4096):
        blob[i] = 1
    after = resident_bytes()
    assert before > 0
    # 32 MiB touched page by page; allow for the allocator and other pages.
    assert 28 * 2**20 <= after - before <= 64 * 2**20
    blob.close()
