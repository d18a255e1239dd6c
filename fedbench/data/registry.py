"""The data set registry: one `DatasetSpec` entry per data set name."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedbench.data.errors import UnknownDatasetError

TASKS = ("classification", "multilabel", "segmentation")

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
# the Oxford mirror torchvision's VOC loaders download from (host.robots.ox.ac.uk is often down)
VOC_URL_TORCHVISION = "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"


@dataclass(frozen=True)
class SourceFile:
    """One accepted source of a data set: a file (or folder) name, its format and checksums.

    `fmt` names the reader in fedbench.data.readers. `url` is the official download (None:
    the user must provide the file, in `root` or in a mirror folder). `md5` is checked for
    files fetched from `url` (or, if it cannot be reached, from `alt_urls` in order);
    `sha256` (if set) for known offline copies found in a mirror.
    A source with neither checksum is accepted as it is (user-provided data).
    """

    filename: str
    fmt: str
    url: str | None = None
    md5: str | None = None
    sha256: str | None = None
    is_dir: bool = False
    note: str = ""
    alt_urls: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """The official URL followed by the alternative ones, tried in this order."""
        return ((self.url,) if self.url else ()) + self.alt_urls


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the registry knows about one data set; adding a data set is one entry."""

    name: str
    task: str
    num_classes: int
    channels: int
    image_size: int
    class_names: tuple[str, ...]
    sources: tuple[SourceFile, ...]
    description: str = ""
    homepage: str = ""
    how_to_get: str = ""
    options: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        if not self.sources:
            raise ValueError(f"{self.name}: at least one source is needed")


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec, overwrite: bool = False) -> DatasetSpec:
    """Add a data set to the registry (refuses to replace an entry unless overwrite=True)."""
    if spec.name in DATASETS and not overwrite:
        raise ValueError(f"data set {spec.name!r} is already registered")
    DATASETS[spec.name] = spec
    return spec


def list_datasets() -> list[str]:
    """Names of all registered data sets, sorted."""
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for `name`; UnknownDatasetError lists the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown data set {name!r}; known data sets: {', '.join(list_datasets())}"
        ) from None


register(
    DatasetSpec(
        name="cifar10",
        task="classification",
        num_classes=10,
        channels=3,
        image_size=32,
        class_names=CIFAR10_CLASSES,
        sources=(
            SourceFile(
                "cifar-10-python.tar.gz",
                "cifar-python",
                url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                md5="c58f30108f718f92721af3b95e74349a",
                note="official python pickles",
            ),
            SourceFile(
                "cifar10-jpeg.tar.gz",
                "imagefolder-targz",
                sha256="097287809041e0a666355dfce11470ba1b3f2631fe910d8793c716253f10b297",
                note="offline JPEG ImageFolder copy (not bit-exact, ~5.8/255 mean abs. error)",
            ),
        ),
        description="CIFAR-10: 10-class classification, 50,000 train / 10,000 test, 32x32 RGB.",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    )
)

register(
    DatasetSpec(
        name="pneumoniamnist",
        task="classification",
        num_classes=2,
        channels=1,
        image_size=28,
        class_names=("normal", "pneumonia"),
        sources=(
            SourceFile(
                "pneumoniamnist.npz",
                "medmnist-npz",
                # the record medmnist>=3 uses; the md5 is the one medmnist's INFO lists
                url="https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1",
                md5="28209eda62fecd6e6a2d98b1501bb15f",
                sha256="e1792d3f03751cb101e99f19a63b3c1941436c988665f47853417b05be250cd8",
                note="official MedMNIST v2 file (CC BY 4.0)",
            ),
        ),
        description="PneumoniaMNIST (MedMNIST v2): normal vs pneumonia, 4,708 / 524 / 624, 28x28 "
        "grey.",
        homepage="https://medmnist.com/",
    )
)

register(
    DatasetSpec(
        name="chestxray",
        task="classification",
        num_classes=2,
        channels=1,
        image_size=224,
        class_names=("NORMAL", "PNEUMONIA"),
        sources=(
            SourceFile("chest_xray", "kermany", is_dir=True, note="extracted ImageFolder"),
            SourceFile("ChestXRay2017.zip", "kermany", note="Mendeley archive"),
            SourceFile("chest_xray.zip", "kermany"),
            SourceFile("chest_xray.tar.gz", "kermany"),
            SourceFile("chest_xray.tar", "kermany"),
        ),
        description="Kermany et al. 2018 paediatric chest X-rays, normal vs pneumonia "
        "(train/test ImageFolder), centre-cropped to a square, resized, grey.",
        homepage="https://data.mendeley.com/datasets/rscbjbr9sj/2",
        how_to_get="download ChestXRay2017.zip from "
        "https://data.mendeley.com/datasets/rscbjbr9sj/2 (or the Kaggle "
        "'chest-xray-pneumonia' archive) and put the archive, or the "
        "extracted chest_xray/{train,test}/{NORMAL,PNEUMONIA} folder, in --root or "
        "--mirror",
    )
)

_VOC_SOURCES = (
    SourceFile(
        "VOCtrainval_11-May-2012.tar",
        "voc",
        url=VOC_URL_TORCHVISION,
        md5=VOC_MD5,
        alt_urls=(VOC_URL,),
        note="official trainval archive",
    ),
    SourceFile("VOCdevkit", "voc", is_dir=True, note="extracted archive"),
)

register(
    DatasetSpec(
        name="voc2012-seg",
        task="segmentation",
        num_classes=21,
        channels=3,
        image_size=128,
        class_names=("background",) + VOC_CLASSES,
        sources=_VOC_SOURCES,
        description="Pascal VOC 2012 semantic segmentation: 21 classes (255 = ignore), "
        "train 1,464 / val 1,449 (val is the test split), images and masks resized "
        "to a square.",
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
    )
)

register(
    DatasetSpec(
        name="voc2012-cls",
        task="multilabel",
        num_classes=20,
        channels=3,
        image_size=128,
        class_names=VOC_CLASSES,
        sources=_VOC_SOURCES,
        description="Pascal VOC 2012 20-class multi-label classification from the detection "
        "annotations (a class is present if any object of it is annotated, "
        "difficult ones included), Main train 5,717 / val 5,823 (val is the test "
        "split), images resized to a square.",
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
    )
)
