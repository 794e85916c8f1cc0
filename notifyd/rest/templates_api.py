"""Templates over REST for admins: list, every version of one, a new version, and a preview render.

Templates are global: a DBA (an admin token without org_id) writes them; an org admin reads them,
and the database refuses their writes (RLS, 403). A new version must compile in the sandbox, use
only the variables it declares and render within the budget with its variables empty (422
otherwise); the worker picks it up at once (the compiled-template cache is keyed by version).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette import status
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response

from notifyd.core.models import Channel, Priority
from notifyd.domain import templates
from notifyd.http.errors import ApiError
from notifyd.http.openapi import Endpoint
from notifyd.http.shared import caller_value, org_admin, reply

PREFIX = "/api/v1/admin/templates"
NOT_FOUND = "template not found"

LANGUAGE = r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*"
Language = Annotated[str, Field(pattern=rf"^{LANGUAGE}$", max_length=35, examples=["de"])]


class LanguageConvertor(Convertor[str]):
    """{language:language} matches a language tag only: PUT …/{name}/preview is a 405, not a language "preview"."""

    regex = LANGUAGE

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("language", LanguageConvertor())
Source = Annotated[str, Field(max_length=100_000)]
FieldName = Annotated[str, Field(min_length=1, max_length=100)]


class TemplateVersion(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    name: str
    type: str
    language: str
    version: int
    title_template: str
    body_template: str
    push_title_template: str | None
    push_body_template: str | None
    email_subject_template: str | None
    email_html_template: str | None
    email_text_template: str | None
    default_priority: Priority
    default_channels: list[Channel]
    variables: dict[str, Any]
    sensitive_fields: list[str]
    is_active: bool
    created_at: datetime


class TemplateList(BaseModel):
    templates: list[TemplateVersion]


class TemplateChange(BaseModel):
    """A new version: the whole template (a version never changes once written)."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(min_length=1, max_length=50)]
    title_template: Source
    body_template: Source
    push_title_template: Source | None = None
    push_body_template: Source | None = None
    email_subject_template: Source | None = None
    email_html_template: Source | None = None
    email_text_template: Source | None = None
    default_priority: Priority = "normal"
    default_channels: Annotated[list[Channel], Field(min_length=1)] = ["in_app", "push"]
    variables: dict[str, str] = Field(
        default_factory=dict, description="every variable the template uses, with what it means"
    )
    sensitive_fields: Annotated[list[FieldName], Field(max_length=50)] = Field(
        default_factory=list,
        description="top-level keys of data and template_vars shown masked in every channel and stored encrypted",
    )


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Language = "en"
    variables: dict[str, Any] = Field(default_factory=dict)


class DraftPreviewRequest(TemplateChange):
    """An unsaved version and the sample variables to render it with (the editor's live preview)."""

    sample: dict[str, Any] = Field(default_factory=dict, description="variables to render the draft with")


class DraftPreview(BaseModel):
    title: str
    body: str
    rendered: dict[str, dict[str, str]]


class Preview(BaseModel):
    language: str
    version: int
    title: str
    body: str
    rendered: dict[str, dict[str, str]]


def template_name(request: Request) -> str:
    name = str(request.path_params["name"])
    if len(name) > 100:
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return name


async def list_templates(request: Request) -> Response:
    caller = await org_admin(request)
    return reply(TemplateList(templates=await caller_value(request, caller, "latest_templates")))


async def get_template(request: Request) -> Response:
    caller = await org_admin(request)
    versions = await caller_value(request, caller, "template_versions", template_name(request))
    if not versions:
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return reply(TemplateList(templates=versions))


async def put_template(request: Request) -> Response:
    caller = await org_admin(request)
    name = template_name(request)
    language = PreviewRequest(language=request.path_params["language"]).language
    body = TemplateChange.model_validate_json(await request.body())
    fields = body.model_dump()
    try:
        templates.check({**fields, "name": name, "language": language})
        await request.app.state.render_pool.check({**fields, "name": name, "language": language})
    except templates.TemplateError as error:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    written = await caller_value(
        request, caller, "put_template", name, language, body.type, body.title_template, body.body_template,
        body.push_title_template, body.push_body_template, body.email_subject_template, body.email_html_template,
        body.email_text_template, body.default_priority, body.default_channels, body.variables,
        body.sensitive_fields,
    )  # fmt: skip
    return reply(TemplateVersion.model_validate(written), status.HTTP_201_CREATED)


async def preview_template(request: Request) -> Response:
    caller = await org_admin(request)
    name = template_name(request)
    body = PreviewRequest.model_validate_json(await request.body())
    languages = await caller_value(request, caller, "template_languages", name)
    default_language = await caller_value(request, caller, "default_language")
    if not languages:
        raise ApiError(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    try:
        # The language asked for, else its fallback, exactly as a recipient with that locale would get it.
        chosen = templates.choose(languages, name, body.language, default_language)
        rendering = await request.app.state.render_pool.render(chosen, body.variables)
    except templates.TemplateError as error:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    preview = Preview(language=chosen["language"], version=chosen["version"], title=rendering.title,
                      body=rendering.body, rendered=rendering.rendered)  # fmt: skip
    return reply(preview)


async def preview_draft(request: Request) -> Response:
    """Renders a version before it is saved, with the checks a save makes: the editor shows their message as one
    types (a missing or undeclared variable, a syntax error)."""
    await org_admin(request)
    name = template_name(request)
    language = PreviewRequest(language=request.path_params["language"]).language
    body = DraftPreviewRequest.model_validate_json(await request.body())
    draft = {**body.model_dump(exclude={"sample"}), "name": name, "language": language}
    try:
        templates.check(draft)
        await request.app.state.render_pool.check(draft)
        rendering = await request.app.state.render_pool.render({**draft, "id": uuid.uuid4(), "version": 0}, body.sample)
    except templates.TemplateError as error:
        raise ApiError(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return reply(DraftPreview(title=rendering.title, body=rendering.body, rendered=rendering.rendered))


_ONE = f"{PREFIX}/{{name}}"
_NO_TEMPLATE = (status.HTTP_404_NOT_FOUND,)

# Admin routes are bearer-token routes ("user" audience in the document); the handlers check the role.
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", PREFIX, list_templates, "the newest version of every template per language (admins)", "user",
             ok_model=TemplateList),
    Endpoint("GET", _ONE, get_template, "every language and version of a template (admins)", "user",
             ok_model=TemplateList, path_params=("name",), errors=_NO_TEMPLATE),
    Endpoint("PUT", f"{_ONE}/{{language:language}}", put_template,
             "write a new version of a template in one language (DBAs; 422 when it does not compile or uses "
             "undeclared variables)", "user", ok_status=status.HTTP_201_CREATED, ok_model=TemplateVersion,
             request_model=TemplateChange, path_params=("name", "language"), errors=_NO_TEMPLATE),
    Endpoint("POST", f"{_ONE}/{{language:language}}/preview", preview_draft,
             "render an unsaved version with sample variables, checked as a save would check it (admins; 422 "
             "says what is wrong)", "user", ok_model=DraftPreview, request_model=DraftPreviewRequest,
             path_params=("name", "language"), errors=_NO_TEMPLATE),
    Endpoint("POST", f"{_ONE}/preview", preview_template,
             "render a template with sample variables in a language (admins; 422 names a missing variable)", "user",
             ok_model=Preview, request_model=PreviewRequest, path_params=("name",), errors=_NO_TEMPLATE),
]  # fmt: skip
