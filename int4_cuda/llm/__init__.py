"""Llama-family decoder-only LLMs for int4_cuda: definition, sources (GGUF, Hugging Face folder,
random presets), tokenizer, export (`export_llm --backend cuda`) and generation."""
