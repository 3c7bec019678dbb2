// Package tokenizer turns text into token ids and back for the two vocab
// kinds GGUF Llama-family files carry: SentencePiece BPE ("llama", also the
// llama2.c tokenizer.bin) and byte-level BPE ("gpt2": Llama 3, Qwen 2, ...).
//
// Behaviour follows llama.cpp's tokenizers (llm_tokenizer_spm and
// llm_tokenizer_bpe) and, for tokenizer.bin files, llama2.c's run.c, so that
// prompts tokenize to the same ids the reference engines feed their models.
// The package depends on the standard library only; the model loader fills a
// Vocab from GGUF metadata and calls New.
package tokenizer
