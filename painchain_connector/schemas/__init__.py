"""marshmallow schemas: integration config in (validated once), PainChain events out."""
