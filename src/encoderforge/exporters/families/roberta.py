from encoderforge.exporters.families import ALL_HEADS, FamilySpec, frozen, register

# RoBERTa: no token_type_ids; position ids start at padding_idx + 1, so 514 positions give 512 tokens.
ROBERTA = register(
    FamilySpec(
        name="roberta",
        model_types=("roberta",),
        input_names=("input_ids", "attention_mask"),
        heads=ALL_HEADS,
        tokenizer_kind="byte-bpe",
        tiny_config=frozen(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=66, type_vocab_size=1,
        ),
        base_config=frozen(
            vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,

        ),
        position_offset=2,
    )
)
