"""/api/docs works offline: Swagger UI comes from the project's own static files
(drf-spectacular-sidecar), served by whitenoise, never from a CDN."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

# What the browser fetches: src/href attributes, CSS url(...) and the schema URL handed to
# SwaggerUIBundle({url: "..."}) in the inline script.
_REFERENCES = re.compile(
    r"""(?:\b(?:src|href)\s*=\s*["']([^"']+)["'])"""
    r"""|(?:url\(\s*["']?([^"')]+)["']?\s*\))"""
    r"""|(?:\burl:\s*["']([^"']+)["'])""")
_CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}


def _references(text: str) -> list[str]:
    return [next(group for group in match if group) for match in _REFERENCES.findall(text)]


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("", "data") and not parts.netloc and not url.startswith("//")


def _body(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


@pytest.fixture(params=["finders", "collected"])
def static_client(request, settings, tmp_path) -> Client:
    """A client of a stack whose whitenoise serves the static files the way local or
    production does: straight from the apps (config/settings/local.py), or collected by
    `collectstatic` into hashed, compressed files (config/settings/production.py, the
    Dockerfile's build step)."""
    if request.param == "finders":
        settings.WHITENOISE_USE_FINDERS = True
    else:
        settings.STATIC_ROOT = tmp_path / "staticfiles"
        settings.STORAGES = {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {
                "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
        }
        call_command("collectstatic", "--noinput", verbosity=0)
    # A new Client builds a new middleware chain, so whitenoise reads the settings above.
    return Client()


def test_docs_page_references_only_local_assets():
    # when the Swagger UI page is fetched
    response = Client().get("/api/docs")
    assert response.status_code == 200
    page = response.content.decode()

    # then nothing in it points at another host, a CDN or a floating version
    assert "cdn" not in page.lower()
    assert "@latest" not in page
    hosts = set(re.findall(r"https?://([^/\"'\s]+)", page))
    assert hosts <= {"testserver"}, hosts
    references = _references(page)
    assert references, page
    not_local = [url for url in references if not _is_local(url)]
    assert not not_local, not_local

    # and the Swagger UI files are the sidecar's, under our own static URL
    assert any(url.startswith("/static/drf_spectacular_sidecar/swagger-ui-dist/")
               and url.endswith(".js") for url in references), references


def test_every_asset_of_the_docs_page_is_served(static_client):
    # given a stack serving its static files (straight from the apps, or collected)
    page = static_client.get("/api/docs").content.decode()
    assets = [url for url in _references(page) if url.startswith("/static/")]
    assert {url.rsplit(".", 1)[-1] for url in assets} == {"css", "js", "png"}, assets

    for url in assets:
        # when the browser fetches each file the page references
        response = static_client.get(url)

        # then it is there, with the content type the browser needs to use it
        assert response.status_code == 200, url
        extension = "." + url.rsplit(".", 1)[-1]
        assert response["Content-Type"].split(";")[0] == _CONTENT_TYPES[extension], (
            url, response["Content-Type"])
        body = _body(response)
        assert body, url
        if extension == ".css":
            # and a stylesheet pulls in nothing from another host either
            not_local = [ref for ref in _references(body.decode()) if not _is_local(ref)]
            assert not not_local, not_local

    # and the schema the page loads is served too
    schema_urls = [url for url in _references(page) if url.startswith("/api/")]
    assert schema_urls == ["/api/schema"], schema_urls
    # (as JSON: Swagger UI asks with `Accept: application/json,*/*`)
    schema = static_client.get("/api/schema", HTTP_ACCEPT="application/json,*/*")
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
