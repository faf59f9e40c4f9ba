"""golf's train_gpt.py: golf's C/CUDA trainer, its export and its evaluation in one file (all of it is counted code).

  torchrun --standalone --nproc_per_node=8 train_gpt.py
Unpacks golf's sources (the text after the last line, xz + base85) into golf_build/, builds train_golf there once per
node (local rank 0 builds, the other local ranks wait; all before train_golf's timer starts), then runs it as this
rank with torchrun's environment and this record's CONFIG (the environment wins). Needs make, nvcc, cuBLAS and
cuBLASLt, NCCL for more than one rank, and a GPU per local rank. train_golf writes logs/RUN_ID.txt and, in OUT_DIR,
train.log, final_model.ckpt and final_model.golf; its artifact line counts this file.
  GOLF_CPU=1        the CPU build instead (train_golf_cpu: CUDA emulated on the CPU, for tests; slow)
  GOLF_UNPACK=DIR   write the sources into DIR and exit
  GOLF_BUILD_DIR    where the builds go (default golf_build)
"""
import base64, glob, lzma, os, shutil, subprocess, sys, time, zlib

CONFIG = {}
SOURCES = (0, 0)  # characters and CRC-32 of the sources' text
MARK = b"\n# golf sources, xz + base85:\n#"
SYSTEM_LIBS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
ME = os.path.abspath(__file__)


def die(msg):
    print(f"train_gpt.py: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def sources():
    """{path: bytes} of the embedded sources; stops, naming the problem, when their text is cut short or damaged"""
    with open(ME, "rb") as f:
        data = f.read()
    cut = data.rfind(MARK)
    text = data[cut + len(MARK):].rstrip(b"\n") if cut >= 0 else b""
    hint = "regenerate this file with golf's dev/submit.sh"
    if len(text) != SOURCES[0]:
        die(f"{ME}: the embedded sources are {len(text)} characters, expected {SOURCES[0]}: the file is truncated; {hint}")
    if zlib.crc32(text) != SOURCES[1]:
        die(f"{ME}: the embedded sources are damaged (CRC-32 {zlib.crc32(text):08x}, expected {SOURCES[1]:08x}); {hint}")
    try:
        raw = lzma.decompress(base64.b85decode(text))
    except (ValueError, lzma.LZMAError) as e:
        die(f"{ME}: the embedded sources do not decode ({e}); {hint}")
    files, k = {}, 0
    while k < len(raw):  # name \n size \n bytes, per file
        name, size, rest = raw[k:].split(b"\n", 2)
        files[name.decode()] = rest[:int(size)]
        k += len(name) + len(size) + 2 + int(size)
    return files


def unpack(files, folder):
    for name, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


def find(paths):
    return next((p for p in paths if p and os.path.exists(p)), None)


def nvcc_toolkit(nvcc):
    """the toolkit folder nvcc itself uses (its TOP; nvcc may be a wrapper script elsewhere), else the folder above its bin/"""
    p = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull], capture_output=True, text=True)
    top = next((l.split("TOP=", 1)[1].strip() for l in (p.stdout + p.stderr).splitlines() if "TOP=" in l), "")
    return os.path.normpath(top) if top else os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def gpu_make_args():
    """make's arguments for train_golf: stops when nvcc, the CUDA libraries, NCCL (several ranks) or the GPUs are missing"""
    cuda = os.environ.get("CUDA_HOME") or find(["/usr/local/cuda", "/opt/cuda"]) or ""
    nvcc = find([shutil.which("nvcc"), cuda and cuda + "/bin/nvcc"])
    if not nvcc:
        die("nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin): install the CUDA toolkit or set CUDA_HOME; "
            "GOLF_CPU=1 runs the CPU build instead")
    cuda = cuda or nvcc_toolkit(nvcc)
    # where the link finds -lcublas: the toolkit's folders (nvcc adds them), LIBRARY_PATH, the system's
    libs = [cuda + "/lib64", cuda + "/lib"] + glob.glob(cuda + "/targets/*/lib") + os.environ.get("LIBRARY_PATH", "").split(":") + SYSTEM_LIBS
    for lib in ("libcublas.so", "libcublasLt.so"):
        if not find([d + "/" + lib for d in libs if d]):
            die(f"the CUDA library {lib} is missing (searched {', '.join(d for d in libs if d)}): install cuBLAS (CUDA toolkit)")
    args = ["train_golf", "USE_MPI=0", "NVCC=" + nvcc, "CUDA_HOME=" + cuda]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not find([cuda + "/include/nccl.h", "/usr/include/nccl.h"]):
        pip = find([p + "/nvidia/nccl" for p in sys.path])  # PyTorch's wheel ships nccl.h and libnccl.so.2
        if not pip:
            die(f"NCCL is missing (no nccl.h in {cuda}/include, /usr/include or a pip nvidia-nccl): WORLD_SIZE="
                f"{os.environ['WORLD_SIZE']} needs it; install libnccl-dev")
        args += ["USE_NCCL=1", f"NVCC_NCCL=-DUSE_NCCL -I{pip}/include -L{pip}/lib -l:libnccl.so.2 -Xlinker -rpath={pip}/lib"]
    gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout if shutil.which("nvidia-smi") else ""
    n, need = sum(g.startswith("GPU ") for g in gpus.splitlines()), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if n < need:
        die(f"no GPU for each local rank: nvidia-smi lists {n}, {need} needed" + ("" if shutil.which("nvidia-smi") else
            " (nvidia-smi not found: no NVIDIA driver)") + "; GOLF_CPU=1 runs the CPU build instead")
    return args


def build(cpu):
    """the path of train_golf (train_golf_cpu), built once per node and payload: local rank 0 builds, the others wait"""
    root = os.path.abspath(os.environ.get("GOLF_BUILD_DIR", "golf_build"))
    folder = os.path.join(root, f"{'cpu' if cpu else 'cuda'}-{SOURCES[1]:08x}")
    exe, failed, t0 = os.path.join(folder, "train_golf_cpu" if cpu else "train_golf"), folder + ".failed", time.time()
    if os.environ.get("LOCAL_RANK", "0") != "0":
        while not os.path.exists(exe):
            if os.path.exists(failed) and os.path.getmtime(failed) >= t0 - 1:
                die(f"local rank 0's build of {exe} failed: see its output")
            if time.time() - t0 > float(os.environ.get("DIST_TIMEOUT", "300")) + 900:
                die(f"waited {time.time() - t0:.0f} s for local rank 0 to build {exe}")
            time.sleep(0.2)
        return exe
    try:
        for tool in ("make", "c++"):
            if not shutil.which(tool):
                die(f"{tool} not found: the build needs make and a C++ compiler")
        args = ["train_golf_cpu", "USE_MPI=0"] if cpu else gpu_make_args()
        files = sources()  # checked on every start: a damaged file never runs an earlier build
        if os.path.exists(exe):
            return exe
        tmp = f"{folder}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        unpack(files, tmp)
        print(f"train_gpt.py: building {exe} (make {' '.join(args)})", flush=True)
        p = subprocess.run(["make", "-C", tmp, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            die(f"the build failed (make {' '.join(args)} in {tmp}):\n{p.stdout[-3000:]}")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return exe
    except SystemExit:
        os.makedirs(root, exist_ok=True)
        open(failed, "w").close()
        os.utime(failed)  # the waiting ranks read its time: this start's failure, not an earlier one
        raise


def main():
    if os.environ.get("GOLF_UNPACK"):
        unpack(sources(), os.environ["GOLF_UNPACK"])
        return
    exe = build(os.environ.get("GOLF_CPU", "0") not in ("", "0"))
    env = {**CONFIG, **os.environ, "GOLF_CODE_FILE": ME}
    os.execve(exe, [exe], env)


if __name__ == "__main__":
    main()
