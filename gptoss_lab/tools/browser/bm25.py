"""bm25s's BM25 index (Lucene's scoring, its defaults), built with array operations instead of a loop per passage, and
its tokenizer, with fewer Python steps per word.

bm25s counts each passage's words with a Counter, computes its scores and sorts the matrix in Python: on 3,000
documents (130,000 passages) building took 4 s of CPU. `FastBM25` computes the same numbers in the same floating
point steps (idf by `math.log`, one value per document frequency; the term part in float64, stored as float32), so
the index, and every search's scores and ranking, are bm25s's own. bm25s's tokenizer looks each word up twice in a
Python loop: `FastTokenizer` maps a text's words to ids in C (`map` over a dict), going word by word only for words
it has not met, and makes bm25s's ids, vocabulary and stems (with passages joined as lists, not word by word, a
first search of those 3,000 documents took 10.8 s of CPU, now 9.9-10.2).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import bm25s
import numpy as np
import scipy.sparse
from bm25s.tokenization import Tokenizer

_STOP = -1   # what FastTokenizer's lookup gives a stop word


class FastBM25(bm25s.BM25):
    """bm25s.BM25 with its defaults (method "lucene"), whose index is built by `build_index_from_ids` below."""

    def build_index_from_ids(self, unique_token_ids: list[int], corpus_token_ids: list[list[int]],
                             show_progress: bool = True, leave_progress: bool = False) -> dict[str, Any]:
        """The scores matrix bm25s builds (CSC: passages by word, each word's passages in order) from
        `corpus_token_ids`, each passage's word ids (which index `unique_token_ids`)."""
        self.nonoccurrence_array = None
        n_docs, n_vocab = len(corpus_token_ids), len(unique_token_ids)
        lengths = np.fromiter(map(len, corpus_token_ids), dtype=np.int64, count=n_docs)
        # ids, passages and counts in 32 bits where they fit (all but a corpus of 2**31 words): the arrays of every
        # word of the corpus in int64 took 1.5 GB to index a 40 MB text of one line
        small = np.int32 if max(n_docs, n_vocab, int(lengths.sum())) < np.iinfo(np.int32).max else np.int64
        words = np.fromiter(itertools.chain.from_iterable(corpus_token_ids), dtype=small, count=int(lengths.sum()))
        docs = np.repeat(np.arange(n_docs, dtype=small), lengths)
        # each word's passages in order, with its count in each: one counting sort (scipy's), duplicates summed
        counted = scipy.sparse.csr_matrix((np.ones(len(words), dtype=small), (words, docs)), shape=(n_vocab, n_docs))
        del words, docs
        counted.sum_duplicates()
        frequencies = np.diff(counted.indptr)
        found, which = np.unique(frequencies, return_inverse=True)   # bm25s's math.log, once a frequency
        idf = np.array([math.log(1 + (n_docs - df + 0.5) / (df + 0.5)) if df else 0.0 for df in found.tolist()],
                       dtype=np.float64)[which].astype(self.dtype)
        word = np.repeat(np.arange(n_vocab, dtype=small), frequencies)
        tf = counted.data.astype(self.dtype)
        # tf / (k1 * ((1 - b) + b * length / mean) + tf), then idf * that: bm25s's steps in its order, each in place in
        # one float64 array (an array of the corpus' size for each step took 40 MB of 130 for 2.5 million words)
        score = lengths[counted.indices].astype(np.float64)
        score *= self.b
        score /= lengths.mean()
        score += 1 - self.b
        score *= self.k1
        score += tf
        np.divide(tf, score, out=score)
        np.multiply(idf[word], score, out=score)
        return {"data": score.astype(self.dtype), "indices": counted.indices.astype(self.int_dtype),
                "indptr": counted.indptr.astype(np.int64), "num_docs": n_docs}


class FastTokenizer(Tokenizer):
    """bm25s's Tokenizer (with a stemmer), whose ids are bm25s's own: each text's words are looked up at once in a
    dict of every word met (stop words among them, as `_STOP`); only a word not met before goes through bm25s's
    steps (stop word, stem, new id in order of first use). Other uses (a query's, not adding to the vocabulary) are
    bm25s's own."""

    def streaming_tokenize(self, texts: list[str], update_vocab: bool | str = True,
                           allow_empty: bool = True) -> Iterator[list[int]]:
        if update_vocab is not True or allow_empty is not True or self.stemmer is None:
            yield from super().streaming_tokenize(texts, update_vocab, allow_empty)
            return
        for _ in super().streaming_tokenize([], update_vocab, allow_empty):   # adds the empty word, as bm25s does
            pass
        stopwords = set(self.stopwords or ())
        known = {**dict.fromkeys(stopwords, _STOP), **self.word_to_id}
        empty = [self.word_to_id[""]]
        for text in texts:
            words = self.splitter(text.lower() if self.lower else text)
            ids = list(map(known.get, words))
            if None in ids:
                for word in words:
                    if word not in known:
                        known[word] = self._new_word(word, stopwords)
                ids = list(map(known.get, words))
            if _STOP in ids:
                ids = [i for i in ids if i != _STOP]
            yield ids or empty.copy()

    def _new_word(self, word: str, stopwords: set[str]) -> int:
        """The id of a word not met before (`_STOP` for a stop word), the vocabulary updated as bm25s updates it."""
        if word in stopwords:
            return _STOP
        stem = self.word_to_stem.get(word)
        if stem is None:
            stem = self.word_to_stem[word] = self.stemmer(word)
        sid = self.stem_to_sid.setdefault(stem, len(self.stem_to_sid))
        self.word_to_id[word] = sid
        return sid
