"""A deniable storage through the mount: a save rewrites every slot, keeps
every partition of the mount and erases the others, after saying so."""
from mountlib import Mount, doc
from sfs_common import EXIT_AUTH, Layout, Storage, run


def cells(text):
    lay = Layout(text)
    return [text[lay.cell(r, c):lay.cell(r, c) + 88] for r in range(lay.capacity)
            for c in range(lay.slots * lay.shares)]


def test_a_save_rewrites_every_cell_and_keeps_the_partitions_of_the_mount(workdir):
    s = Storage(workdir, extra=("--deniable",))
    r = run("update", s.path, "-", *s.cred("b"), *s.cred("a"), input=doc("kept", 2))
    assert r.returncode == 0, r.stderr
    before = s.path.read_bytes()
    m = Mount(s)
    try:
        m.path("a.json").write_bytes(doc("saved", 1))
        log = m.unmount()
    finally:
        m.cleanup()
    assert "ERASED" in log  # said when the mount started
    after = s.path.read_bytes()
    same = sum(x == y for x, y in zip(cells(before), cells(after)))
    assert same == 0
    assert s.cat("a") == doc("saved", 1) and s.cat("b") == doc("kept", 2)


def test_a_mount_of_one_partition_erases_the_other_at_its_first_save(workdir):
    s = Storage(workdir, extra=("--deniable",))
    m = Mount(s, labels=("a",))
    try:
        assert m.path("a.json").read_bytes() == b"{}"
        m.path("a.json").write_bytes(doc("alone", 1))
        log = m.unmount()
    finally:
        m.cleanup()
    assert "ERASED" in log and "1 partition(s)" in log
    assert s.cat("a") == doc("alone", 1)
    assert run("cat", s.path, *s.cred("b")).returncode == EXIT_AUTH
