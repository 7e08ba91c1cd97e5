"""Dev-time script that built the shipped image, speech and MRI samples in inrcodec/data (not used at run time).

Sources (Debian packages unpacked with ``apt-get download PKG && dpkg -x PKG_*.deb x``; the nilearn wheel
unzipped; both at development time only):

* images: Debian ``opencv-doc`` 4.6.0, ``/usr/share/doc/opencv-doc/examples/data/*.jpg|png`` (Apache-2.0 AND
  BSD-3-Clause): photographs centre-cropped to a square, Lanczos-resized to 256 x 256, grey (ITU-R 601 luma),
  PNG. One image is one item; train/validation/test are different photographs.
* speech: Debian ``asterisk-core-sounds-{en,es,fr}-g722`` 1.6.1 (CC-BY-SA-3.0): 16 kHz G.722 prompts decoded
  with PyAV, concatenated per split, 16-bit FLAC. Train: English prompts (Allison Smith), validation: Mexican
  Spanish prompts (same speaker), test: Canadian French prompts (June Wallack: another speaker and language).
* MRI: Colin27 (``ch2.nii.gz``, Debian ``mricron-data``) for training, and the MNI ICBM152 2009a symmetric T1
  template (nilearn 0.14.1 wheel, ``nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``)
  for validation (inferior half) and test (superior half). Both are 2 x 2 x 2 block-averaged to 2 mm, cropped
  to 80 x 96 x 80 voxels around the head, reordered to (inferior-superior, posterior-anterior, left-right) so
  the first axis indexes axial slices, and stored as uint8 NIfTI (intensities 0-255 as in the sources).

Usage:
    apt-get download opencv-doc mricron-data asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 \
        asterisk-core-sounds-fr-g722
    for d in *.deb; do dpkg -x $d x; done
    pip download nilearn==0.14.1 --no-deps -d nl && (cd nl && unzip -q nilearn-*.whl)
    python scripts/build_modality_samples.py x nl
"""

import glob
import hashlib
import os
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "inrcodec", "data")
DEB = sys.argv[1] if len(sys.argv) > 1 else "/tmp/data15/x"
NILEARN = sys.argv[2] if len(sys.argv) > 2 else "/tmp/data15/nl"

# Natural photographs only (no logos, charts, synthetic patterns, text or calibration boards).
IMAGES = {
    "train": ["aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "building.jpg",
              "butterfly.jpg", "fruits.jpg", "graf1.png", "home.jpg", "leuvenA.jpg", "orange.jpg",
              "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg"],
    "val": ["messi5.jpg", "stuff.jpg", "board.jpg"],
    "test": ["aero3.jpg", "starry_night.jpg", "ela_original.jpg", "licenseplate_motion.jpg"],
}
SPEECH = {"train_en": ("en_US_f_Allison", 60.0), "val_es": ("es_MX_f_Allison", 12.0),
          "test_fr": ("fr_CA_f_June", 20.0)}


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def build_images():
    from PIL import Image

    src = f"{DEB}/usr/share/doc/opencv-doc/examples/data"
    for split, names in IMAGES.items():
        out = os.path.join(ROOT, "images", split)
        os.makedirs(out, exist_ok=True)
        for name in names:
            img = Image.open(os.path.join(src, name)).convert("L")
            w, h = img.size
            s = min(w, h)
            img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            img = img.resize((256, 256), Image.LANCZOS)
            path = os.path.join(out, os.path.splitext(name)[0] + ".png")
            img.save(path, optimize=True)
            print(path, os.path.getsize(path), sha(path)[:12])


def _decode_g722(path):
    import av

    with av.open(path, format="g722") as c:
        return np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)]).astype(np.int16)


def build_speech():
    import soundfile

    out = os.path.join(ROOT, "speech")
    os.makedirs(out, exist_ok=True)
    for split, (voice, seconds) in SPEECH.items():
        # top-level prompts only (sentences; the digits/letters folders are single words), in name order
        files = sorted(glob.glob(f"{DEB}/usr/share/asterisk/sounds/{voice}/*.g722"))
        parts, n = [], 0
        for f in files:
            x = _decode_g722(f)
            parts.append(x)
            n += len(x)
            if n >= seconds * 16000:
                break
        x = np.concatenate(parts)[: int(seconds * 16000)]
        path = os.path.join(out, f"{split}.flac")
        soundfile.write(path, x, 16000, subtype="PCM_16", format="FLAC")
        print(path, len(parts), "prompts", os.path.getsize(path), sha(path)[:12])


def _mri_2mm(data):
    data = np.asarray(data, dtype=np.float32)
    s = [d // 2 * 2 for d in data.shape]
    data = data[: s[0], : s[1], : s[2]]
    data = data.reshape(s[0] // 2, 2, s[1] // 2, 2, s[2] // 2, 2).mean(axis=(1, 3, 5))
    # crop 80 x 96 x 80 (x, y, z) around the head's bounding box centre
    mask = data > 0.1 * data.max()
    idx = np.argwhere(mask)
    centre = (idx.min(axis=0) + idx.max(axis=0)) // 2
    size = np.array([80, 96, 80])
    lo = np.clip(centre - size // 2, 0, np.array(data.shape) - size)
    data = data[lo[0] : lo[0] + 80, lo[1] : lo[1] + 96, lo[2] : lo[2] + 80]
    return np.transpose(data, (2, 1, 0))  # (z, y, x): axis 0 indexes axial slices


def build_mri():
    import nibabel

    out = os.path.join(ROOT, "mri")
    os.makedirs(out, exist_ok=True)
    sources = {
        "colin27_2mm.nii.gz": f"{DEB}/usr/share/mricron/templates/ch2.nii.gz",
        "mni152_2009a_2mm.nii.gz": f"{NILEARN}/nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    }
    affine = np.diag([2.0, 2.0, 2.0, 1.0])[[2, 1, 0, 3]]  # array axes (z, y, x) -> world (x, y, z)
    for name, src in sources.items():
        vol = _mri_2mm(nibabel.load(src).get_fdata())
        vol = np.clip(np.round(vol), 0, 255).astype(np.uint8)
        img = nibabel.Nifti1Image(vol, affine)
        img.header.set_data_dtype(np.uint8)
        img.header["descrip"] = b"inrcodec sample, 2 mm, axis 0 = axial slices"
        path = os.path.join(out, name)
        nibabel.save(img, path)
        print(path, vol.shape, os.path.getsize(path), sha(path)[:12])


if __name__ == "__main__":
    build_images()
    build_speech()
    build_mri()
