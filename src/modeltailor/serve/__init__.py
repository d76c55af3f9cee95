"""`tailor serve`: a REST API (FastAPI + uvicorn) for a trained run. From Python::

    from modeltailor.serve import create_app
    app = create_app("runs/pets")          # ONNX when runs/pets/export/model.onnx exists
    uvicorn.run(app, port=8000)

From the shell: `tailor serve runs/pets --port 8000`.
"""

from modeltailor.serve.app import DEFAULT_MAX_UPLOAD_BYTES, create_app
from modeltailor.serve.backends import InputError, Predictor, load_predictor

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "InputError",
    "Predictor",
    "create_app",
    "load_predictor",
]
