"""SentencePiece vocabularies and `python -m atm.data.vocab` with per-language temperature sampling."""
import json
import random

import numpy as np
import pytest

from atm.data import synthetic
from atm.data import vocab as vocab_lib
from atm.data.vocab import SPECIAL_PIECES, SentencePieceVocabulary

# a small "language" with its own words, so its pieces compete with English for the vocabulary
_SMALL_WORDS = ("habari", "asubuhi", "tafadhali", "nyumbani", "kengele", "saa", "mvua", "leo", "kesho",
                "muziki", "cheza", "washa", "zima", "taa", "jikoni", "rafiki", "simu", "piga", "ujumbe")


def _small_language_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_SMALL_WORDS) for _ in range(rng.randint(3, 7))) for _ in range(n)]


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_language_conventions():
    assert [vocab_lib.file_language(p) for p in ("a/en.txt", "wiki.de.txt", "train-sw.txt", "en-US.txt",
                                                 "corpus.txt")] == ["en", "de", "sw", "en-US", "corpus.txt"]
    assert vocab_lib.line_language("fr\tbonjour le monde", "en") == ("fr", "bonjour le monde")
    assert vocab_lib.line_language("pt_BR\tolá", "en") == ("pt_BR", "olá")
    assert vocab_lib.line_language("hello\tworld", "en") == ("en", "hello\tworld")  # not a language code
    assert vocab_lib.line_language("no tab here", "sw") == ("sw", "no tab here")


def test_temperature_rates():
    rates = vocab_lib.temperature_rates({"big": 100, "small": 1}, alpha=0.3)
    assert rates["big"] == pytest.approx(100 ** 0.3 / (100 ** 0.3 + 1)) == pytest.approx(0.79924, abs=1e-5)
    assert vocab_lib.temperature_rates({"big": 100, "small": 1}, alpha=1.0)["small"] == pytest.approx(1 / 101)
    assert vocab_lib.temperature_rates({"big": 100, "small": 1}, alpha=0.0) == {"big": 0.5, "small": 0.5}
    assert vocab_lib.temperature_rates({"a": 5, "b": 0}, alpha=0.3) == {"a": 1.0, "b": 0.0}
    with pytest.raises(ValueError, match="alpha"):
        vocab_lib.temperature_rates({"a": 1}, alpha=-1)


def test_sample_by_language_upsamples_small_languages():
    by_language = {"en": [f"en {i}" for i in range(1000)], "sw": [f"sw {i}" for i in range(10)]}
    pairs, stats = vocab_lib.sample_by_language(by_language, alpha=0.3, total=1010, seed=0)
    q_sw = 10 ** 0.3 / (10 ** 0.3 + 1000 ** 0.3)  # 0.2008, against 10 / 1010 = 0.0099 proportionally
    assert stats["sw"]["sampled"] == round(q_sw * 1010) == 203 and stats["en"]["sampled"] == 807
    sw = [text for language, text in pairs if language == "sw"]
    assert len(sw) == 203 and set(sw) == set(by_language["sw"])  # 20 whole passes + 3 lines
    assert max(sw.count(x) for x in set(sw)) - min(sw.count(x) for x in set(sw)) <= 1
    assert len(set(t for lang, t in pairs if lang == "en")) == 807  # the big language is subsampled, no repeats
    again, _ = vocab_lib.sample_by_language(by_language, alpha=0.3, total=1010, seed=0)
    other, _ = vocab_lib.sample_by_language(by_language, alpha=0.3, total=1010, seed=1)
    assert again == pairs and other != pairs


def test_vocab_cli_trains_with_temperature_sampling(tmp_path, capsys):
    en = _write_lines(tmp_path / "en.txt", synthetic.utterances(3000, seed=0, languages=("en",)))
    sw = _write_lines(tmp_path / "corpus.sw.txt", _small_language_lines(30))
    mixed = _write_lines(tmp_path / "mixed.txt", ["de\tWeck mich um sieben Uhr", "fr\tRéveille-moi à sept heures",
                                                  "de\tSpiel etwas Jazz"])
    samples = {}
    for alpha in (1.0, 0.3):
        prefix = str(tmp_path / f"sp{alpha}")
        assert vocab_lib.main([f"--input={en},{tmp_path}/*.sw.txt,{mixed}", "--vocab_size=400",
                               f"--out={prefix}", f"--alpha={alpha}", "--max_lines=3000"]) == 0
        model = SentencePieceVocabulary(prefix + ".model")
        assert [model.id_to_piece(i) for i in range(5)] == list(SPECIAL_PIECES)
        with open(prefix + ".sampling.json", encoding="utf-8") as f:
            summary = json.load(f)
        stats = summary["languages"]
        assert {k: v["lines"] for k, v in stats.items()} == {"en": 3000, "sw": 30, "de": 2, "fr": 1}
        rates = vocab_lib.temperature_rates({"en": 3000, "sw": 30, "de": 2, "fr": 1}, alpha)
        assert {k: v["rate"] for k, v in stats.items()} == pytest.approx(rates)
        assert {k: v["sampled"] for k, v in stats.items()} == {k: round(r * 3000) for k, r in rates.items()}
        samples[alpha] = (model, stats)
    assert samples[1.0][1]["sw"]["sampled"] == 30 and samples[0.3][1]["sw"]["sampled"] == 519
    out = capsys.readouterr().out
    assert "wrote" in out and "sw" in out
    # the upsampled small language is encoded in fewer pieces per word than when drowned by English
    text = " ".join(_small_language_lines(50, seed=1))
    pieces = {alpha: len(model.encode(text)) for alpha, (model, _) in samples.items()}
    assert pieces[0.3] < pieces[1.0]


def test_vocab_cli_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="--input: no file matches"):
        vocab_lib.main([f"--input={tmp_path}/none*.txt", "--vocab_size=100", f"--out={tmp_path}/x"])
    with pytest.raises(SystemExit):
        vocab_lib.main([f"--input={tmp_path}/a.txt", "--vocab_size=3", f"--out={tmp_path}/x"])


def test_vocab_cli_spoken_share(tmp_path):
    lines = ["Wake me at 7 AM!", "Set an alarm for 9:30, please."] * 200
    en = _write_lines(tmp_path / "en.txt", lines)
    prefix = str(tmp_path / "spoken")
    vocab_lib.main([f"--input={en}", "--vocab_size=60", f"--out={prefix}", "--spoken_share=1.0"])
    model = SentencePieceVocabulary(prefix + ".model")
    pieces = {model.id_to_piece(i) for i in range(model.size)}
    assert not any(c.isdigit() or c in "!,:" or c.isupper() for p in pieces - set(SPECIAL_PIECES) for c in p)
    ids = model.encode("wake me at seven am")
    assert model.decode(ids) == "wake me at seven am" and model.unk_id not in ids
    assert np.all(np.array(ids) >= model.first_regular_id)
