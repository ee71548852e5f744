"""Host roots for host-mode tests: a mount table under tmp_path, and stat functions that hang."""
import os


def hanging_stat(hang_path, release):
    def stat(path):
        if path == hang_path:
            release.wait(30)
        return os.statvfs(path)
    return stat


def nfs_root(tmp_path):
    """A host root whose mount table has an ext4 / and an NFS share: (root, host path of the share).

    Local block-device filesystems are stat'ed inline; the NFS share goes
    through the deadline guard, as a network mount that can hang must."""
    root = tmp_path / "host"
    (root / "proc" / "1").mkdir(parents=True)
    (root / "srv" / "share").mkdir(parents=True)
    (root / "proc" / "1" / "mounts").write_text(
        "/dev/vda1 / ext4 rw,relatime 0 0\nfiler:/export /srv/share nfs4 rw,relatime 0 0\n")
    return str(root), str(root / "srv" / "share")
