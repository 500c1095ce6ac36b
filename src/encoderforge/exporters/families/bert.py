from encoderforge.exporters.families import ALL_HEADS, FamilySpec, frozen, register

# BERT: here for the one real checkpoint reachable offline (sentence-transformers/all-MiniLM-L6-v2).
BERT = register(
    FamilySpec(
        name="bert",
        model_types=("bert",),
        input_names=("input_ids", "attention_mask", "token_type_ids"),
        heads=ALL_HEADS,
        tokenizer_kind="wordpiece",
        tiny_config=frozen(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64,
        ),
        base_config=frozen(),
    )
)
