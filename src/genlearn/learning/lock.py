"""One writer per run folder: an advisory lock on `DIR/.genlearn.lock`.

The lock is an flock(2) on that file, which holds the writer's PID. The kernel drops the lock when the process
ends however it ends (SIGKILL included), so the file a dead process leaves behind is a stale lock that the next
writer simply takes over; a live holder is reported by its PID. Readers (eval, sample) never take the lock: they
only ask who holds it (`holder`) to say that a run is being written. Under torchrun only rank 0 writes a run,
so only it takes the lock (`writes_runs`)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from genlearn.errors import RunError

LOCK_FILE = ".genlearn.lock"

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, a PID file with a liveness check instead
    fcntl = None


def writes_runs() -> bool:
    """False in a data-parallel process other than rank 0 (torchrun's RANK), which writes nothing."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) <= 1 or int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class RunLock:
    """The exclusive lock of one run folder; `acquire` creates the folder when needed (and `release` removes it
    again when it is still empty, so that a refused or failed fit leaves nothing behind)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.path = self.dir / LOCK_FILE
        self.fd: int | None = None
        self.created = False

    def acquire(self) -> "RunLock":
        if self.dir.exists() and not self.dir.is_dir():
            raise RunError(f"--out {self.dir} is a file; give a folder")
        self.created = not self.dir.exists()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
                if fcntl is None:  # pragma: no cover
                    self._acquire_pid_file(fd)
                    break
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    self._refuse(_read_pid(self.path))
                # the holder before us may have removed the file between our open and our lock: lock the file
                # that is at the path now
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.fd = fd
        except OSError as exc:
            self._cleanup()
            above = next((a for a in (self.dir, *self.dir.parents) if a.exists()), None)
            why = (f"{above} is a file, not a folder" if above is not None and not above.is_dir()
                   else exc.strerror or str(exc))
            raise RunError(f"cannot lock the run folder {self.dir} ({why}); choose another --out") from None
        except BaseException:
            self._cleanup()
            raise
        return self

    def _acquire_pid_file(self, fd: int) -> None:  # pragma: no cover - platforms without flock
        pid = _read_pid(self.path)
        if pid is not None and pid != os.getpid() and _pid_alive(pid):
            os.close(fd)
            self._refuse(pid)

    def _refuse(self, pid: int | None):
        who = f"process {pid}" if pid is not None else "another process"
        raise RunError(f"{self.dir} is being written by {who} (lock {self.path}); wait for it to finish, stop it, "
                       "or choose another --out")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: a waiting writer then locks a new file
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self.created:
            try:
                self.dir.rmdir()  # only when empty: a run that wrote nothing leaves no folder
            except OSError:
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(directory) -> int | None:
    """The PID of the live process writing the run in `directory`, None when nobody holds its lock."""
    path = Path(directory) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if fcntl is None:  # pragma: no cover
            pid = _read_pid(path)
            return pid if pid is not None and _pid_alive(pid) else None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_pid(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def locked_out(fit):
    """Decorate `genlearn.runs.fit`: hold the lock of its `out` folder (when given, in the process that writes)
    for the whole fit, from reading a checkpoint to writing the metrics."""

    @functools.wraps(fit)
    def wrapper(*args, **kwargs):
        out = kwargs.get("out")
        from genlearn.validate import check_path_argument

        check_path_argument(out, "out")  # a path, before the lock makes a folder of it
        if out is None or not writes_runs():
            return fit(*args, **kwargs)
        if kwargs.get("resume") and not Path(out).exists():  # before the lock makes the folder
            from genlearn.errors import RunError

            raise RunError(f"{out}: no such folder, so no run to resume; give the folder a fit wrote (--resume DIR)")
        with RunLock(out):
            for tmp in Path(out).glob(".*.tmp"):  # the only writer: these are left by a killed one
                try:
                    tmp.unlink()
                except OSError:
                    pass
            return fit(*args, **kwargs)

    return wrapper
