"""A filesystem that takes a name's NFC and NFD spellings for one name, as macOS, ZFS with
normalization and some CIFS servers do: a FUSE passthrough to BACKING that stores and looks
up every name in NFC. Files keep the owner of the process that made them.

    python3 nfcfs.py BACKING MOUNTPOINT      (foreground; unmount to stop)
"""
import errno
import os
import sys
import unicodedata

try:
    # Debian's python3-fusepy names the module after the package.
    from fusepy import FUSE, FuseOSError, Operations, fuse_get_context
except ImportError:
    from fuse import FUSE, FuseOSError, Operations, fuse_get_context


class Nfc(Operations):
    def __init__(self, root):
        self.root = root

    def _p(self, path):
        return os.path.join(self.root, unicodedata.normalize("NFC", path).lstrip("/"))

    def _own(self, p):
        uid, gid, _ = fuse_get_context()
        os.lchown(p, uid, gid)

    def getattr(self, path, fh=None):
        st = os.lstat(self._p(path))
        keys = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_ino",
                "st_atime", "st_mtime", "st_ctime", "st_blocks")
        out = {k: getattr(st, k) for k in keys}
        for k in ("st_atime", "st_mtime", "st_ctime"):
            out[k] = getattr(st, k + "_ns") / 1e9
        return out

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._p(path))

    def readlink(self, path):
        return os.readlink(self._p(path))

    def mkdir(self, path, mode):
        os.mkdir(self._p(path), mode)
        self._own(self._p(path))

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def unlink(self, path):
        os.unlink(self._p(path))

    def symlink(self, target, source):
        os.symlink(source, self._p(target))
        self._own(self._p(target))

    def link(self, target, source):
        os.link(self._p(source), self._p(target))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        os.lchown(self._p(path), uid, gid)

    def truncate(self, path, length, fh=None):
        os.truncate(self._p(path), length)

    def utimens(self, path, times=None):
        os.utime(self._p(path), times, follow_symlinks=False)

    def statfs(self, path):
        st = os.statvfs(self._p(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree",
                "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(st, k) for k in keys}

    def create(self, path, mode, fi=None):
        fd = os.open(self._p(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        self._own(self._p(path))
        return fd

    def open(self, path, flags):
        return os.open(self._p(path), flags & ~(os.O_CREAT | os.O_EXCL))

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        os.fsync(fh)
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0

    def getxattr(self, path, name, position=0):
        raise FuseOSError(errno.ENOTSUP)

    def listxattr(self, path):
        return []


if __name__ == "__main__":
    FUSE(Nfc(sys.argv[1]), sys.argv[2], foreground=True, allow_other=True,
         default_permissions=True, use_ino=True, nothreads=True)
