"""Python runtime: importable classes only, loading by name, thread safety, output checks."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import FailedPreconditionError, InferenceError, InvalidInputError
from modelyard.manifest import Manifest
from modelyard.runtime import RuntimeOptions
from modelyard.runtimes import PythonModel
from modelyard.runtimes.python import PythonRuntime
from tests.unit.runtimes.models import save_and_load
from tests.unit.runtimes.pymodels import BadOutputModel, ScaleModel, SerialModel


def _runtime(tmp_path: Path, class_path: str) -> PythonRuntime:
    manifest = Manifest(runtime="python", runtime_options={"class": class_path})
    return PythonRuntime(tmp_path, manifest, RuntimeOptions())


def test_class_in_main_is_refused(tmp_path: Path) -> None:
    cls = type("Notebook", (PythonModel,), {"__module__": "__main__"})
    with pytest.raises(InvalidInputError, match=r"defined in __main__.*importable module"):
        PythonRuntime.save(cls(), tmp_path, sample=None)


def test_class_in_function_is_refused(tmp_path: Path) -> None:
    class Local(PythonModel):
        pass

    with pytest.raises(InvalidInputError, match="function body"):
        PythonRuntime.save(Local(), tmp_path, sample=None)


def test_redefined_class_is_refused(tmp_path: Path) -> None:
    impostor = type("ScaleModel", (PythonModel,), {"__module__": ScaleModel.__module__})
    with pytest.raises(InvalidInputError, match="does not import as the same class"):
        PythonRuntime.save(impostor(), tmp_path, sample=None)


def test_save_records_class_and_model_files(tmp_path: Path) -> None:
    saved = PythonRuntime.save(ScaleModel(), tmp_path, sample={"input": np.ones((2, 4))})
    assert saved.runtime_options == {"class": "tests.unit.runtimes.pymodels:ScaleModel"}
    assert (tmp_path / "weights.npy").is_file()
    assert saved.signature is not None
    assert [(o.name, o.shape) for o in saved.signature.outputs] == [("output", (-1, 4))]


def test_no_signature_without_sample(tmp_path: Path) -> None:
    saved = PythonRuntime.save(ScaleModel, tmp_path, sample=None)
    assert saved.signature is None


@pytest.mark.parametrize(
    ("class_path", "message"),
    [
        ("no_such_package.models:Model", "cannot import model class"),
        ("tests.unit.runtimes.pymodels:Missing", "cannot import model class"),
        ("tests.unit.runtimes.pymodels:NotAModel", "not a subclass"),
        ("tests.unit.runtimes.pymodels", "not 'module:QualName'"),
    ],
)
def test_bad_class_path_fails_load(tmp_path: Path, class_path: str, message: str) -> None:
    with pytest.raises(FailedPreconditionError, match=message):
        _runtime(tmp_path, class_path).load()


def test_missing_class_option_fails_load(tmp_path: Path) -> None:
    runtime = PythonRuntime(tmp_path, Manifest(runtime="python"), RuntimeOptions())
    with pytest.raises(FailedPreconditionError, match=r"runtime_options\.class"):
        runtime.load()


def test_non_dict_output_is_an_inference_error(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, "tests.unit.runtimes.pymodels:BadOutputModel")
    runtime.load()
    runtime.warmup()  # nothing to warm up with: no signature, no example
    with pytest.raises(InferenceError, match=r"BadOutputModel\.predict returned list"):
        runtime.predict({})
    assert BadOutputModel.signature is None


def test_model_exceptions_are_inference_errors(tmp_path: Path) -> None:
    runtime = save_and_load(ScaleModel(), tmp_path, sample={"input": np.ones((1, 4))})
    with pytest.raises(InferenceError, match="python runtime: KeyError"):
        runtime.predict({"other": np.ones((1, 4))})


def test_unsafe_models_are_called_one_at_a_time(tmp_path: Path) -> None:
    runtime = save_and_load(SerialModel(), tmp_path)
    assert isinstance(runtime, PythonRuntime)
    model = runtime.model
    assert isinstance(model, SerialModel)
    x = {"x": np.ones(1)}
    first = threading.Thread(target=runtime.predict, args=(x,))
    first.start()
    assert model.entered.wait(5)
    assert runtime._lock is not None and runtime._lock.locked()  # the second caller would wait
    second = threading.Thread(target=runtime.predict, args=(x,))
    second.start()
    model.release.set()
    first.join(5)
    second.join(5)
    assert not model.overlapped
