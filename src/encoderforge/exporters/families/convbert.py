from encoderforge.exporters.families import ALL_HEADS, FamilySpec, frozen, register

# ConvBERT: mixed attention + span-based dynamic convolution; an encoder only (no causal-LM head).
CONVBERT = register(
    FamilySpec(
        name="convbert",
        model_types=("convbert",),
        input_names=("input_ids", "attention_mask", "token_type_ids"),
        heads=tuple(h for h in ALL_HEADS if h != "text-generation"),
        tokenizer_kind="wordpiece",
        tiny_config=frozen(
            hidden_size=32, embedding_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, head_ratio=2, conv_kernel_size=9, num_groups=1,
        ),
        base_config=frozen(vocab_size=30522),
        padding_sensitive=True,
    )
)
