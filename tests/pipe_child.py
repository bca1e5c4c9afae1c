"""A helper for test_parallel_pipes: answers, then stays alive a while."""

from __future__ import annotations

import sys
import time

from checker.parallel import answer_pipe, close_inherited

if __name__ == "__main__":
    close_inherited()
    answer = answer_pipe()
    print("this goes to stderr now")  # (descriptor 1 is no longer the pipe)
    answer.write(b"answer")
    answer.close()
    time.sleep(float(sys.argv[1]))
