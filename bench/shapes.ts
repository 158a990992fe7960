// Model shapes the benches share.

/** llama2.c's stories15M shape (dim 288, 6 layers, 6 heads, hidden 768) with the given vocabulary, context and tying: a plain LlamaConfig record. */
export function stories15MShape(o: { vocabSize: number; maxPositions: number; tied: boolean }) {
  return {
    vocab_size: o.vocabSize,
    hidden_size: 288,
    intermediate_size: 768,
    num_hidden_layers: 6,
    num_attention_heads: 6,
    num_key_value_heads: 6,
    max_position_embeddings: o.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: o.tied,
  };
}
