from encoderforge.exporters.families import ALL_HEADS, FamilySpec, frozen, register

# CamemBERT: RoBERTa architecture with a SentencePiece tokenizer (converted to tokenizer.json at export).
CAMEMBERT = register(
    FamilySpec(
        name="camembert",
        model_types=("camembert",),
        input_names=("input_ids", "attention_mask"),
        heads=ALL_HEADS,
        tokenizer_kind="unigram",
        tiny_config=frozen(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=66, type_vocab_size=1,
        ),
        base_config=frozen(
            vocab_size=32005, max_position_embeddings=514, type_vocab_size=1,

        ),
        position_offset=2,
    )
)
