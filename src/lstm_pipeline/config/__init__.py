"""Configuration: the schemas that Hydra composes against (:mod:`.schema`, defaults derived from the
components' signatures) and the checks of a composed config (:mod:`.checks`)."""
