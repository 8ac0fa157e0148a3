"""The JSON the HTTP API (``ship/api.py``) takes and answers, as pydantic models.

FastAPI checks each request body against its model and writes every model into the OpenAPI schema
(``/openapi.json``, shown at ``/docs``). The answers have one fixed shape each, so they are classes here; the
request models carry the server's limits (``--max-chars``, ``--max-batch``), so each app builds its own:

    from distill_core.ship.api_schemas import BatchResponse, request_models
    PredictRequest, BatchRequest = request_models(max_chars=20_000, max_batch=64)
    PredictRequest.model_validate({"text": "Stocks rallied on Friday."})   # raises ValidationError when out of range

``ERROR_RESPONSES`` and ``BUSY_RESPONSE`` document the error answers for the endpoints' ``responses=``.
"""

# No `from __future__ import annotations`: the request models name `Text`, a type built inside request_models,
# which pydantic could not find from a string.
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

EXAMPLE = "Stocks rallied on Friday after the central bank held interest rates steady."


def request_models(max_chars: int, max_batch: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """The two request bodies, ``PredictRequest`` ({"text": ...}) and ``BatchRequest`` ({"texts": [...]}).

    Args:
        max_chars: the most characters a text may have (each text also needs one that is not whitespace).
        max_batch: the most texts a batch may hold.
    """
    Text = Annotated[str, StringConstraints(min_length=1, max_length=max_chars, pattern=r"\S"),
                     Field(description=f"the text to classify, 1-{max_chars} characters, not only whitespace")]

    class PredictRequest(BaseModel):
        model_config = ConfigDict(json_schema_extra={"examples": [{"text": EXAMPLE}]})
        text: Text

    class BatchRequest(BaseModel):
        model_config = ConfigDict(json_schema_extra={"examples": [{"texts": [EXAMPLE, "The home side won the cup."]}]})
        texts: list[Text] = Field(min_length=1, max_length=max_batch, description=f"1-{max_batch} texts to classify")

    return PredictRequest, BatchRequest


class Answer(BaseModel):
    label: str = Field(description="the most probable class")
    confidence: float = Field(ge=0, le=1, description="its probability")
    probabilities: dict[str, float] = Field(description="the probability of every class, by name")
    tokens: int = Field(ge=0, description="tokens in the whole text, [CLS] and [SEP] included")
    truncated_tokens: int = Field(ge=0, description="tokens cut to fit the model's max length")
    unknown_token_share: float = Field(ge=0, le=1, description="share of the text's own tokens that the model's "
                                       "tokenizer does not know (its unknown token, e.g. [UNK]); over half, the "
                                       "prediction says little")
    warnings: list[str] = Field(default_factory=list, description="what makes this answer less trustworthy, "
                                "e.g. a text mostly unknown to the tokenizer")


class Served(BaseModel):
    model: str = Field(description="the model answering: teacher, student or baseline")
    backend: str = Field(description="torch, onnx or onnx-int8")
    run: str
    latency_ms: float = Field(ge=0, description="tokenising and the forward pass, in the model's worker")
    queue_ms: float = Field(ge=0, description="time waiting for a free worker")


class PredictResponse(Answer, Served):
    pass


class BatchResponse(Served):
    predictions: list[Answer]


class Health(BaseModel):
    status: Literal["loading", "ready", "failed"]
    error: str | None = None


class Info(BaseModel):
    run: str
    model: str
    title: str
    backend: str
    dataset: str | None
    labels: list[str]
    max_length: int = Field(description="tokens the model reads; longer texts are truncated")
    truncation: str = Field("head", description="which tokens of a longer text it reads: head (the first), tail "
                            "(the last), head+tail (the first quarter and the last three quarters)")
    parameters: int
    test_accuracy: float | None = Field(description="the model's test accuracy in the run (results.json)")
    test_macro_f1: float | None
    backend_test_accuracy: float | None = Field(
        description="test accuracy of the exported graph served (ONNX backends; from the export's verification)")
    max_chars: int
    max_batch: int
    max_request_chars: int = Field(description="characters of all the texts of one request together")
    workers: int
    queue: int


class Error(BaseModel):
    error: str = Field(description="what is wrong and how to fix it")
    detail: list[dict[str, Any]] | None = None


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}
BUSY_RESPONSE = {"model": Error, "description": "busy (every worker and queue place taken) or still loading",
                 "headers": RETRY_AFTER}
ERROR_RESPONSES = {400: {"model": Error, "description": "the body could not be read (not UTF-8 text)"},
                   413: {"model": Error, "description": "body too large, or texts over the characters allowed per "
                                                        "request (`max_request_chars` in /info)"},
                   422: {"model": Error, "description": "invalid input; `error` says what to fix"}, 503: BUSY_RESPONSE}
