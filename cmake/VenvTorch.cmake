# Finds libtorch inside the torch wheel of the project's Python environment (.venv, made by
# ./setup.sh) and defines the imported target `torch::libtorch`. Torch's own TorchConfig.cmake is
# not used: on a machine without the CUDA toolkit it stops ("cannot find the CUDA libraries").
#
# Inputs:  FINEPURIFY_PYTHON   the Python whose torch to use (default: .venv/bin/python)
#          FINEPURIFY_CUDA     AUTO (default: link the CUDA backend when the wheel has it and this
#                              machine has an NVIDIA device), ON, OFF
# Outputs: torch::libtorch, FINEPURIFY_TORCH_VERSION, FINEPURIFY_TORCH_DIR, FINEPURIFY_WITH_CUDA

set(FINEPURIFY_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH
    "Python interpreter whose torch wheel provides libtorch")
set(FINEPURIFY_CUDA "AUTO" CACHE STRING "Link libtorch's CUDA backend: AUTO, ON or OFF")

if(NOT EXISTS "${FINEPURIFY_PYTHON}")
  message(FATAL_ERROR "finepurify: no Python at ${FINEPURIFY_PYTHON}. Run ./setup.sh (it creates .venv "
                      "with the pinned torch from requirements.txt) or pass -DFINEPURIFY_PYTHON=/path/to/python.")
endif()

# Locate the package without importing it (importing loads CUDA libraries; slow and not needed).
# Run with a clean Python environment: under `pip install .` (pyproject.toml) the build backend's
# isolation variables would hide the venv's site-packages.
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env --unset=PYTHONPATH --unset=PYTHONNOUSERSITE --unset=PYTHONHOME "${FINEPURIFY_PYTHON}" -c
    "import importlib.util, os, sysconfig; s = importlib.util.find_spec('torch'); print(os.path.dirname(s.origin) if s else ''); print(sysconfig.get_paths()['purelib'])"
  OUTPUT_VARIABLE _fp_out RESULT_VARIABLE _fp_rc OUTPUT_STRIP_TRAILING_WHITESPACE)
string(REPLACE "\n" ";" _fp_out "${_fp_out}")
list(GET _fp_out 0 FINEPURIFY_TORCH_DIR)
list(GET _fp_out 1 _fp_site)
if(NOT _fp_rc EQUAL 0 OR NOT FINEPURIFY_TORCH_DIR OR NOT EXISTS "${FINEPURIFY_TORCH_DIR}/lib/libtorch_cpu.so")
  message(FATAL_ERROR "finepurify: ${FINEPURIFY_PYTHON} has no torch wheel with libtorch "
                      "(looked for torch/lib/libtorch_cpu.so). Run ./setup.sh.")
endif()

file(STRINGS "${FINEPURIFY_TORCH_DIR}/version.py" _fp_ver REGEX "^__version__")
string(REGEX REPLACE ".*['\"]([^'\"]+)['\"].*" "\\1" FINEPURIFY_TORCH_VERSION "${_fp_ver}")

# The wheel's C++ ABI flag is recorded in its CMake config; every wheel since 2.7 uses the new ABI.
set(_fp_abi 1)
file(GLOB _fp_caffe2 "${FINEPURIFY_TORCH_DIR}/share/cmake/Caffe2/Caffe2Config.cmake")
if(_fp_caffe2)
  file(STRINGS "${_fp_caffe2}" _fp_abi_line REGEX "_GLIBCXX_USE_CXX11_ABI=")
  if(_fp_abi_line MATCHES "_GLIBCXX_USE_CXX11_ABI=([01])")
    set(_fp_abi "${CMAKE_MATCH_1}")
  endif()
endif()

set(_fp_lib "${FINEPURIFY_TORCH_DIR}/lib")
set(_fp_has_gpu OFF)
if(EXISTS "/dev/nvidiactl" OR EXISTS "/dev/nvidia0")
  set(_fp_has_gpu ON)
endif()
if(FINEPURIFY_CUDA STREQUAL "AUTO")
  if(EXISTS "${_fp_lib}/libtorch_cuda.so" AND _fp_has_gpu)
    set(FINEPURIFY_WITH_CUDA ON)
  else()
    set(FINEPURIFY_WITH_CUDA OFF)
  endif()
elseif(FINEPURIFY_CUDA)
  if(NOT EXISTS "${_fp_lib}/libtorch_cuda.so")
    message(FATAL_ERROR "finepurify: FINEPURIFY_CUDA=ON but ${_fp_lib} has no libtorch_cuda.so (a CPU-only wheel)")
  endif()
  set(FINEPURIFY_WITH_CUDA ON)
else()
  set(FINEPURIFY_WITH_CUDA OFF)
endif()

set(_fp_libs "${_fp_lib}/libtorch_cpu.so" "${_fp_lib}/libc10.so")
if(FINEPURIFY_WITH_CUDA)
  # Linked whole so that the CUDA kernels register themselves at load time.
  list(APPEND _fp_libs "-Wl,--no-as-needed" "${_fp_lib}/libtorch_cuda.so" "${_fp_lib}/libc10_cuda.so" "-Wl,--as-needed")
endif()

# libtorch_cpu itself needs libcudart / libcupti in CUDA wheels; they live in the nvidia-* wheels
# beside torch (torch's Python loader finds them the same way). Put every such folder on the rpath.
set(_fp_rpath "${_fp_lib}")
file(GLOB_RECURSE _fp_nv_libs LIST_DIRECTORIES false "${_fp_site}/nvidia/*.so*")
foreach(_f ${_fp_nv_libs})
  get_filename_component(_d "${_f}" DIRECTORY)
  list(APPEND _fp_rpath "${_d}")
endforeach()
list(REMOVE_DUPLICATES _fp_rpath)

add_library(torch::libtorch INTERFACE IMPORTED)
target_include_directories(torch::libtorch SYSTEM INTERFACE
  "${FINEPURIFY_TORCH_DIR}/include" "${FINEPURIFY_TORCH_DIR}/include/torch/csrc/api/include")
target_compile_definitions(torch::libtorch INTERFACE _GLIBCXX_USE_CXX11_ABI=${_fp_abi})
target_link_libraries(torch::libtorch INTERFACE ${_fp_libs})
string(REPLACE ";" ":" _fp_rpath_str "${_fp_rpath}")
target_link_options(torch::libtorch INTERFACE "-Wl,-rpath,${_fp_rpath_str}" "-Wl,--disable-new-dtags")
if(FINEPURIFY_WITH_CUDA)
  target_compile_definitions(torch::libtorch INTERFACE FINEPURIFY_WITH_CUDA=1)
endif()

message(STATUS "finepurify: libtorch ${FINEPURIFY_TORCH_VERSION} from ${FINEPURIFY_TORCH_DIR} "
               "(CXX11 ABI ${_fp_abi}, CUDA backend ${FINEPURIFY_WITH_CUDA})")
