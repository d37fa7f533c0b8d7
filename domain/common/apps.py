from django.apps import AppConfig


class CommonConfig(AppConfig):
    """Pure helpers; no models of its own since API keys moved to domain/access.

    It stays an installed app for its migration history: common.0001 created the API-key table
    that domain/access now owns (under the same table name), and existing databases have that
    migration applied.
    """

    name = "domain.common"
    label = "common"
    verbose_name = "Common"
