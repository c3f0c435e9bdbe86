"""Other papers' published numbers beside ours: only where data, model and method match, with the
source named and the recipe's differences said; the numbers live in one torch-free module."""

import subprocess
import sys

from benchmark.report import leaderboard as lb
from benchmark.report import published
from tests.report.test_leaderboard import OFFSETS, make_record, rows_of


def _suite(model, methods, dataset, epochs=4, seeds=3):
    return [make_record("papers", model, m, s, 7.0 + OFFSETS[s], dataset=dataset, epochs=epochs)
            for m in methods for s in range(seeds)]


def test_the_random_erasing_papers_resnet20_numbers_stand_beside_our_resnet20_re():
    recs = _suite("resnet20_re", ["plain", "random_erasing", "cutout"], "cifar10")
    text = lb.render(recs, suite="papers")
    rows = {r[1]: r for r in rows_of(text, "Published numbers")}
    assert rows["plain"][3:] == ["7.21", "-0.20", "Zhong et al. 2017"]  # 7.01 - 7.21
    assert rows["random_erasing"][3:] == ["6.73", "+0.28", "Zhong et al. 2017"]
    assert rows["cutout"][3:] == ["—", "—", "—"]  # no paper reports Cutout on this ResNet-20
    assert "github.com/zhunzhong07/Random-Erasing" in text
    assert "Their recipe: 300 epochs" in text and "ours trained 4 epochs" in text


def test_fashion_mnist_gets_the_papers_numbers_and_the_authors_note_on_its_release():
    recs = _suite("resnet20_re", ["plain", "random_erasing"], "fashion_mnist", epochs=300)
    text = lb.render(recs, suite="papers")
    rows = {r[1]: r for r in rows_of(text, "Published numbers")}
    assert rows["plain"][3] == "4.39" and rows["random_erasing"][3] == "4.02"
    assert "the same number of epochs as ours" in text
    assert "latest release of Fashion-MNIST" in text


def test_no_published_number_stands_beside_another_architecture_other_data_or_settings():
    # the thesis's He et al. resnet20 (option A) is not the Random Erasing code's ResNet-20
    assert "## Published numbers" not in lb.render(
        _suite("resnet20", ["plain", "random_erasing"], "cifar10"), suite="papers")
    # no paper here reports a model of ours on SVHN (Cutout's SVHN number is a WRN-16-8)
    assert "## Published numbers" not in lb.render(
        _suite("resnet20_re", ["plain"], "svhn"), suite="papers")
    assert published.lookup("cifar10", "resnet20_re", "random_erasing", {"p": 1.0}) is None
    assert published.lookup("cifar10", "resnet20_re", "random_erasing", {"p": 0.5},
                            mode="append") is None
    assert published.lookup("cifar100", "timm/resnet18", "cutout", {"size": 16}) is None
    assert published.lookup("cifar100", "timm/resnet18", "cutout", {"size": 8}).error == 21.96


def test_every_published_row_names_a_source_a_recipe_and_a_model_we_can_build():
    from benchmark import models

    for row in published.ROWS:
        assert row.source in published.SOURCES and row.source in published.RECIPES
        models.check(row.model)
        assert 0 < row.error < 100


def test_the_published_numbers_module_is_a_leaf_without_torch():
    code = ("import sys; import benchmark.report.published; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_random_erasing_source_names_the_readme_table_it_is_copied_from():
    from benchmark.report.published import SOURCES

    cite = SOURCES["zhong2017"][1]
    assert "the table after \"You can reproduce the results in our paper:\"" in cite
    assert "Our results" not in cite
