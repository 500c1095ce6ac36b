from encoderforge.exporters.families import ALL_HEADS, FamilySpec, frozen, register

# RemBERT: small input embeddings (256) projected to the hidden size (1152), decoupled output embeddings.
# Full size is ~2.3 GB in fp32, so its graphs go to external data.
REMBERT = register(
    FamilySpec(
        name="rembert",
        model_types=("rembert",),
        input_names=("input_ids", "attention_mask", "token_type_ids"),
        heads=ALL_HEADS,
        tokenizer_kind="unigram",
        tiny_config=frozen(
            hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=64,
            input_embedding_size=16, output_embedding_size=24, max_position_embeddings=64,

        ),
        base_config=frozen(),
    )
)
