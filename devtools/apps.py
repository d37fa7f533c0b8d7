from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """Tools for a developer's machine (`runstack`). Installed by the local and test settings
    only: production images do not carry them."""

    name = "devtools"
    label = "devtools"
    verbose_name = "Developer tools"
