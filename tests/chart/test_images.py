"""tests/cluster/images.sh reproduces the Dockerfiles' final stage (no cluster needed): it accepts
the repository's Dockerfiles and refuses one with an instruction it cannot reproduce, so that the
images the tests run and the images users build cannot drift apart silently."""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "cluster" / "images.sh"


def check(dockerfile_dir):
    env = dict(os.environ, PORTCULLIS_DOCKERFILE_DIR=str(dockerfile_dir))
    return subprocess.run(["bash", str(SCRIPT), "--check"], cwd=ROOT, env=env, capture_output=True, text=True)


def test_the_repository_dockerfiles_are_reproduced():
    result = check(ROOT)
    assert result.returncode == 0, result.stderr


def test_an_instruction_images_sh_does_not_know_is_refused(tmp_path):
    for component in ("operator", "sidecar"):
        (tmp_path / component).mkdir()
        shutil.copy(ROOT / component / "Dockerfile", tmp_path / component / "Dockerfile")
    sidecar = tmp_path / "sidecar" / "Dockerfile"
    sidecar.write_text(sidecar.read_text().replace("\nUSER ", "\nCOPY --from=build /etc/ssl /etc/ssl-extra\nUSER ", 1))
    result = check(tmp_path)
    assert result.returncode != 0
    assert "sidecar/Dockerfile: COPY --from=build /etc/ssl /etc/ssl-extra" in result.stderr, result.stderr
