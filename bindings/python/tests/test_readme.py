"""The README's Python example, run verbatim."""
import os
import re


def test_readme_example(tmp_path, monkeypatch):
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "no python example in README.md"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "rms_norm.onnx").is_file()
