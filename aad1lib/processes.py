"""Run a command in its own process group and kill the whole group on a timeout (base layer).

``torch.distributed.run`` starts worker processes; a collective that never completes would leave them running if
only the launcher were killed, so the timeout kills the group.
"""

from __future__ import annotations

import os
import signal
import subprocess


def run_process_group(cmd: list[str], timeout: float, **popen_kwargs) -> tuple[int, str]:
    """Run ``cmd``; return ``(exit code, stderr)``. Past ``timeout`` seconds every process of its group is killed and
    ``TimeoutError`` names the command and the stderr tail."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **popen_kwargs)  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        raise TimeoutError(f"{' '.join(cmd)}\ntimed out after {timeout} s (killed)\n{stderr[-4000:]}") from None
    return proc.returncode, stderr
