from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """Tools for a developer's machine (`runstack`). Installed by the local and test settings
    only: the production image holds the files (it copies the tree) but the production settings
    do not install the app, so `manage.py runstack` does not exist there."""

    name = "devtools"
    label = "devtools"
    verbose_name = "Developer tools"
