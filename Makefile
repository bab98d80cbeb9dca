# aria.c build. `make` builds build/libaria.a and ./aria; `make test` runs
# the Criterion suite; `make test-asan` runs it again under ASan + UBSan;
# `make fuzz` builds the libFuzzer targets (clang); `make bench` the
# benchmark program.
CC       ?= cc
BUILD    ?= build
OPT      ?= -O2
CFLAGS   ?= $(OPT) -g
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CPPFLAGS += -Iinclude -Isrc
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(CFLAGS) $(SAN)
LDLIBS   += -lm -pthread

# oneDNN, MPI, FluidSynth and libpng are compiled against but not linked:
# the code that uses each opens it with dlopen at its first use
# (src/base/dynlib.h), so that a command needing none of them starts as
# fast as a bare process (bench/startup.sh). soname_of gives the file to
# open: the soname that a program linked with the flags $(1) records for
# the library whose name starts with $(2) (empty when that fails; the
# source then has a default). DL_LIBS: -ldl where dlopen is not in libc.
soname_of = $(shell t=$$(mktemp) && printf 'int main(void){return 0;}\n' | \
              $(CC) -x c - -o $$t -Wl,--no-as-needed $(1) >/dev/null 2>&1 && \
              objdump -p $$t 2>/dev/null | sed -n 's/^ *NEEDED *\($(2)[^ ]*\)$$/\1/p' | head -n 1; rm -f $$t)
DL_LIBS := $(shell printf '\043include <dlfcn.h>\nint main(void){return !dlopen(0, RTLD_NOW);}\n' | \
              $(CC) -x c - -o /dev/null >/dev/null 2>&1 || echo -ldl)
LDLIBS   += $(DL_LIBS)

# PORTABLE=1 builds the plain C kernels only: no x86 intrinsics (the
# AVX-512 backend compiles to nothing), no target_clones, no oneDNN, as
# on a CPU other than x86-64. CI builds and tests it (.ci/run) so that
# such a build keeps linking. Use its own BUILD folder.
ifeq ($(PORTABLE),1)
CPPFLAGS += -DARIA_PORTABLE
DNNL := 0
endif

# oneDNN (Debian: libdnnl-dev) gives large matrix products their fast path
# (src/kernels/backend_onednn.c). Found by compiling and linking a probe;
# without it, or with DNNL=0, PORTABLE=1 or in sanitizer builds, the
# AVX-512 and portable backends are built.
ifeq ($(SAN),)
DNNL ?= $(shell printf '\043include <dnnl.h>\nint main(void){return dnnl_version()->major < 2;}\n' | \
          $(CC) -x c - -o /dev/null -ldnnl >/dev/null 2>&1 && echo 1 || echo 0)
endif
ifeq ($(DNNL),1)
DNNL_SONAME ?= $(call soname_of,-ldnnl,libdnnl)
DNNL_SONAME := $(DNNL_SONAME)
CPPFLAGS += -DHAVE_DNNL $(if $(DNNL_SONAME),-DARIA_DNNL_SONAME='"$(DNNL_SONAME)"')
BENCH_LIBS += -ldnnl -lgomp   # bench_model/bench_train time oneDNN's own matmul
endif

# FluidSynth (Debian: libfluidsynth-dev) renders MIDI to audio (aria render,
# src/tasks/render.c) and libpng (libpng-dev) writes piano-roll pictures
# (aria roll, src/tasks/roll.c). Each is found by compiling and linking a
# probe; without one (or with FLUIDSYNTH=0 / PNG=0) the build works, that
# command says how to get it, and its tests skip.
FLUIDSYNTH ?= $(shell printf '\043include <fluidsynth.h>\nint main(void){return !new_fluid_settings();}\n' | \
          $(CC) -x c - -o /dev/null -lfluidsynth >/dev/null 2>&1 && echo 1 || echo 0)
FLUIDSYNTH := $(FLUIDSYNTH)
ifeq ($(FLUIDSYNTH),1)
FLUIDSYNTH_SONAME ?= $(call soname_of,-lfluidsynth,libfluidsynth)
FLUIDSYNTH_SONAME := $(FLUIDSYNTH_SONAME)
CPPFLAGS += -DHAVE_FLUIDSYNTH $(if $(FLUIDSYNTH_SONAME),-DARIA_FLUIDSYNTH_SONAME='"$(FLUIDSYNTH_SONAME)"')
endif
PNG ?= $(shell printf '\043include <png.h>\nint main(void){return !png_get_libpng_ver(0);}\n' | \
          $(CC) -x c - -o /dev/null -lpng >/dev/null 2>&1 && echo 1 || echo 0)
PNG := $(PNG)
ifeq ($(PNG),1)
PNG_SONAME ?= $(call soname_of,-lpng,libpng)
PNG_SONAME := $(PNG_SONAME)
CPPFLAGS += -DHAVE_PNG $(if $(PNG_SONAME),-DARIA_PNG_SONAME='"$(PNG_SONAME)"')
TEST_LIBS += -lpng   # tests/test_media.c reads the pictures back
endif

# MPI (Debian: libopenmpi-dev openmpi-bin) lets `aria train` run data
# parallel under mpirun (src/dist/dist.c). Flags from `mpicc --showme` (Open MPI)
# or pkg-config's mpi, then a probe that compiles and links with $(CC);
# without MPI, or with MPI=0, or in sanitizer builds, dist.c is its
# one-process fallback. Another MPI: MPI=1 MPI_CFLAGS=... MPI_LIBS=...
ifeq ($(SAN),)
MPI_CFLAGS ?= $(shell mpicc --showme:compile 2>/dev/null || pkg-config --cflags mpi 2>/dev/null)
MPI_LIBS   ?= $(shell mpicc --showme:link 2>/dev/null || pkg-config --libs mpi 2>/dev/null)
MPI_CFLAGS := $(MPI_CFLAGS)
MPI_LIBS   := $(MPI_LIBS)
MPI ?= $(shell printf '\043include <mpi.h>\nint main(void){return MPI_Init(0, 0);}\n' | \
         $(CC) $(MPI_CFLAGS) -x c - -o /dev/null $(MPI_LIBS) >/dev/null 2>&1 && echo 1 || echo 0)
MPI := $(MPI)
endif
ifeq ($(MPI),1)
MPI_SONAME ?= $(call soname_of,$(MPI_LIBS),libmpi)
MPI_SONAME := $(MPI_SONAME)
CPPFLAGS += -DHAVE_MPI $(MPI_CFLAGS) $(if $(MPI_SONAME),-DARIA_MPI_SONAME='"$(MPI_SONAME)"')
endif

LIB_SRC  := $(wildcard src/*/*.c)
LIB_HDR  := include/aria.h $(wildcard src/*/*.h)
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/src/%.o)
CLI_SRC  := $(wildcard cli/*.c)
CLI_OBJ  := $(CLI_SRC:cli/%.c=$(BUILD)/cli/%.o)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%.o)
LIB      := $(BUILD)/libaria.a
BIN      := $(if $(filter build,$(BUILD)),aria,$(BUILD)/aria)

.PHONY: FORCE all test test-asan fuzz bench bench-model bench-sampler bench-train clean shared python install test-python
all: $(BIN)

$(BUILD)/src/%.o: src/%.c $(LIB_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/cli/%.o: cli/%.c $(LIB_HDR) cli/cli.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/tests/%.o: tests/%.c $(LIB_HDR) $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

# everything is compiled again when PORTABLE changes
$(LIB_OBJ) $(CLI_OBJ) $(TEST_OBJ): $(BUILD)/portable-$(PORTABLE).stamp
$(BUILD)/portable-$(PORTABLE).stamp:
	@mkdir -p $(BUILD) && rm -f $(BUILD)/portable-*.stamp && touch $@

# everything is compiled again when oneDNN is found or lost (kernels.h and
# the tests read HAVE_DNNL): a build made before scripts/install-deps.sh
# would otherwise keep running without it
$(LIB_OBJ) $(CLI_OBJ) $(TEST_OBJ): $(BUILD)/dnnl-$(DNNL).stamp
$(BUILD)/dnnl-$(DNNL).stamp:
	@mkdir -p $(BUILD) && rm -f $(BUILD)/dnnl-*.stamp && touch $@

# dist.o is compiled again when MPI is found or lost
$(BUILD)/src/dist/dist.o: $(BUILD)/mpi-$(MPI).stamp
$(BUILD)/mpi-$(MPI).stamp:
	@mkdir -p $(BUILD) && rm -f $(BUILD)/mpi-*.stamp && touch $@

# render.o and roll.o (and the tests that look) are compiled again when
# FluidSynth or libpng is found or lost
$(BUILD)/src/tasks/render.o $(BUILD)/src/tasks/roll.o $(BUILD)/pic/src/tasks/render.o $(BUILD)/pic/src/tasks/roll.o $(TEST_OBJ): $(BUILD)/media-$(FLUIDSYNTH)$(PNG).stamp
$(BUILD)/media-$(FLUIDSYNTH)$(PNG).stamp:
	@mkdir -p $(BUILD) && rm -f $(BUILD)/media-*.stamp && touch $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^
$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/test_aria: $(TEST_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $^ -o $@ -lcriterion $(LDLIBS) $(TEST_LIBS)

# The suite runs the CLI too (ARIA_BIN) and reads fixtures under tests/data;
# optional tests that need ../shared skip themselves when it is absent.
test: $(BUILD)/test_aria $(BIN)
	ARIA_BIN=./$(BIN) ./$(BUILD)/test_aria $(TEST_ARGS)

# The shared library: the same sources compiled again as position-independent
# code under $(BUILD)/pic, linked with a version script that exports only the
# functions include/aria.h declares (every other symbol stays local), and named
# libaria.so.$(ARIA_VERSION) with soname libaria.so.$(ARIA_MAJOR).
ARIA_VERSION := $(shell sed -n 's/^\#define ARIA_VERSION "\(.*\)"/\1/p' include/aria.h)
ARIA_MAJOR   := $(firstword $(subst ., ,$(ARIA_VERSION)))
SO_NAME      := libaria.so.$(ARIA_MAJOR)
SO           := $(BUILD)/libaria.so.$(ARIA_VERSION)
PIC_OBJ      := $(LIB_SRC:src/%.c=$(BUILD)/pic/src/%.o)
$(BUILD)/pic/src/%.o: src/%.c $(LIB_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -fPIC -c $< -o $@
$(PIC_OBJ): $(BUILD)/portable-$(PORTABLE).stamp $(BUILD)/dnnl-$(DNNL).stamp
$(BUILD)/pic/src/dist/dist.o: $(BUILD)/mpi-$(MPI).stamp
$(BUILD)/libaria.map: include/aria.h
	@mkdir -p $(BUILD)
	{ echo 'ARIA_$(ARIA_MAJOR) { global:'; \
	  grep -oE '\baria_[a-z0-9_]+ *\(' include/aria.h | tr -d ' (' | sort -u | sed 's/$$/;/'; \
	  echo 'local: *; };'; } > $@
$(SO): $(PIC_OBJ) $(BUILD)/libaria.map
	$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,$(SO_NAME) -Wl,--version-script,$(BUILD)/libaria.map \
	  -Wl,--no-undefined $(PIC_OBJ) -o $@ $(LDLIBS)
	ln -sf libaria.so.$(ARIA_VERSION) $(BUILD)/$(SO_NAME)
	ln -sf libaria.so.$(ARIA_VERSION) $(BUILD)/libaria.so
shared: $(SO)

# pkg-config file: -laria for the shared library; Libs.private lists what the
# static one needs (pkg-config --static); the optional libraries are opened
# at run time (dlopen), never linked. Written on every make (the prefix of
# this call goes in), and replaced only when its text changes.
PREFIX ?= /usr/local
$(BUILD)/aria.pc: Makefile include/aria.h FORCE
	@mkdir -p $(BUILD)
	@printf '%s\n' 'prefix=$(PREFIX)' 'includedir=$${prefix}/include' 'libdir=$${prefix}/lib' '' \
	  'Name: aria' 'Description: Aria piano-MIDI transformer system (tokenizer, model, training) in C' \
	  'Version: $(ARIA_VERSION)' 'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -laria' \
	  'Libs.private: $(strip $(LDLIBS))' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi
FORCE:

# make install PREFIX=/opt/aria: the header, both libraries, aria.pc, the
# aria command and the bundled models (share/aria/models, where `aria
# generate` and `aria embed` find them from bin/). DESTDIR is honoured.
install: $(BIN) $(LIB) $(SO) $(BUILD)/aria.pc
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/aria.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libaria.so.$(ARIA_VERSION) $(DESTDIR)$(PREFIX)/lib/$(SO_NAME)
	ln -sf libaria.so.$(ARIA_VERSION) $(DESTDIR)$(PREFIX)/lib/libaria.so
	install -m 644 $(BUILD)/aria.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/
	for m in aria-small-gen aria-small-emb; do \
	  install -d $(DESTDIR)$(PREFIX)/share/aria/models/$$m && \
	  install -m 644 models/$$m/* $(DESTDIR)$(PREFIX)/share/aria/models/$$m/ || exit 1; \
	done

# The Python package (bindings/python/aria_c, ctypes): `make python` puts the
# shared library beside it, so PYTHONPATH=bindings/python works from the
# checkout and `pip install ./bindings/python` carries the library along.
# test-python runs its pytest suite with Debian's interpreter (numpy, mido).
PYTHON ?= /usr/bin/python3
python: $(SO)
	cp -f $(SO) bindings/python/aria_c/libaria.so.tmp
	mv -f bindings/python/aria_c/libaria.so.tmp bindings/python/aria_c/libaria.so
test-python: python $(BIN)
	ARIA_BIN=$(abspath $(BIN)) ARIA_BUILD=$(BUILD) PYTHONPATH=bindings/python $(PYTHON) -m pytest -q tests/python

ASAN_BUILD ?= build-asan
test-asan:
	$(MAKE) test BUILD=$(ASAN_BUILD) OPT=-O1 MPI=0 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  TEST_ARGS="-j1 $(TEST_ARGS)"

FUZZ_SRC := $(wildcard fuzz/*.c)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
build-fuzz/%: fuzz/%.c $(LIB_SRC) $(LIB_HDR)
	@mkdir -p build-fuzz
	clang -Iinclude -Isrc -std=c11 -D_GNU_SOURCE -pthread -g -O1 -fsanitize=fuzzer,address,undefined $< $(LIB_SRC) -o $@ -lm
fuzz: $(FUZZ_BIN)

bench: $(BUILD)/bench_tokenize
$(BUILD)/bench_tokenize: bench/bench_tokenize.c $(LIB)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

# The model benchmark (bench/run_model.sh runs it beside PyTorch).
bench-model: $(BUILD)/bench_model
$(BUILD)/bench_model: bench/bench_model.c bench/bench_common.h $(LIB) $(LIB_HDR)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) bench/bench_model.c $(LIB) -o $@ $(LDLIBS) $(BENCH_LIBS)

# The sampler's draws for bench/sampler_check.py (beside a PyTorch sampler).
bench-sampler: $(BUILD)/sampler_dump
$(BUILD)/sampler_dump: bench/sampler_dump.c $(LIB) $(LIB_HDR)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) bench/sampler_dump.c $(LIB) -o $@ $(LDLIBS)

# The training benchmark (bench/run_train.sh runs it beside PyTorch).
bench-train: $(BUILD)/bench_train
$(BUILD)/bench_train: bench/bench_train.c bench/bench_common.h $(LIB)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) bench/bench_train.c $(LIB) -o $@ $(LDLIBS) $(BENCH_LIBS)

clean:
	rm -rf build build-asan build-portable build-fuzz aria
