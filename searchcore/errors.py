"""The errors a user can meet: each is a kind with its parameters as fields, worded in English and Chinese.

A raise names the kind and its fields, `QueryError("top_k_range", max_top_k=1000, top_k=5000)`; MESSAGES holds
the kind's two wordings, filled from the fields by str.format. str() of an error is its English message (the
CLI prints it, the API returns it beside the kind and the fields); `render("zh")` is its Chinese one (the UI
shows that to a browser that prefers Chinese). Nothing reads a message's words back.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

LANGUAGES = ("en", "zh")

# kind: (English, Chinese). A field that is itself an error is rendered in the same language.
MESSAGES: dict[str, tuple[str, str]] = {
    # Settings
    "setting_out_of_range": ("{setting} must be between {low} and {high}, got {value}",
                             "{setting} 必须在 {low} 到 {high} 之间，收到 {value}"),
    "setting_at_least": ("{setting} must be {low} or more, got {value}",
                         "{setting} 必须不小于 {low}，收到 {value}"),
    "setting_choice": ("{setting} must be one of {allowed}, got {value!r}",
                       "{setting} 必须是 {allowed} 之一，收到 {value!r}"),
    "env_not_integer": ("{variable} must be an integer, got {value!r}",
                        "{variable} 必须是整数，收到 {value!r}"),
    "db_url_scheme": ("unsupported SEARCHCORE_DB_URL scheme {scheme!r}: use a SQLite path or mysql://...",
                      "不支持的 SEARCHCORE_DB_URL 协议 {scheme!r}：请使用 SQLite 路径或 mysql://..."),
    "db_name_missing": ("database name missing in SEARCHCORE_DB_URL {url}",
                        "SEARCHCORE_DB_URL {url} 中缺少数据库名"),
    "auth_file_unreadable": ("cannot read auth file {path}: {reason}",
                             "无法读取认证文件 {path}：{reason}"),
    "auth_line_invalid": ("{where}: expected user:password",
                          "{where}：应写成 用户名:密码"),
    "cuda_unavailable": ("device cuda was asked for, but no CUDA GPU is available; use --device cpu",
                         "指定了 cuda 设备，但没有可用的 CUDA GPU；请使用 --device cpu"),
    "fp16_needs_cuda": ("fp16 runs on CUDA only; on a CPU use bf16 or fp32",
                        "fp16 只能在 CUDA 上运行；CPU 上请用 bf16 或 fp32"),
    "int8_needs_cpu": ("int8 runs on the CPU with OpenVINO; on CUDA use fp16",
                       "int8 只能用 OpenVINO 在 CPU 上运行；CUDA 上请用 fp16"),
    "openvino_needs_cpu": ("the openvino backend runs on the CPU; use --backend torch with CUDA",
                           "openvino 后端只能在 CPU 上运行；使用 CUDA 时请用 --backend torch"),
    "gpu_decode_needs_torch": ("gpu_decode on decodes JPEGs with PyTorch: use --backend torch, or --gpu-decode "
                               "auto",
                               "gpu_decode on 用 PyTorch 解码 JPEG：请用 --backend torch，或 --gpu-decode auto"),
    "int8_needs_openvino": ("int8 needs the OpenVINO backend (pip install openvino; --backend openvino)",
                            "int8 需要 OpenVINO 后端（pip install openvino；--backend openvino）"),
    "ocr_missing": ("OCR needs rapidocr-onnxruntime, which ships its models: pip install "
                    "'rapidocr-onnxruntime>=1.4,<1.5' ({reason})",
                    "文字识别（OCR）需要自带模型的 rapidocr-onnxruntime：pip install "
                    "'rapidocr-onnxruntime>=1.4,<1.5'（{reason}）"),
    "ocr_models_missing": ("rapidocr-onnxruntime at {folder} lacks {missing}; reinstall it",
                           "{folder} 中的 rapidocr-onnxruntime 缺少 {missing}；请重新安装"),
    # Records skipped by an ingest stage (indexing/): BadRecord.reason holds a RecordError of one of these
    "record_no_image_id": ("no image id",
                           "没有图片 id"),
    "record_no_image_data": ("no image data for image id {image_id}",
                             "图片 id {image_id} 没有图片数据"),
    "record_duplicate_id": ("duplicate image id {image_id} with different content from line {first_line}",
                            "图片 id {image_id} 重复，且内容与第 {first_line} 行不同"),
    "record_id_stored_differently": ("image id {image_id} is already stored with different content",
                                     "图片 id {image_id} 已存有内容不同的图片"),
    "record_copy_not_ingested": ("same content as another file of this folder, which could not be ingested",
                                 "与本文件夹中另一个文件内容相同，而那个文件未能导入"),
    "record_feature_dims": ("feature has {dims} dimensions; the library's model has {model_dims}",
                            "特征有 {dims} 维；图库的模型是 {model_dims} 维"),
    "record_video_needs_migrate": ("library {library!r} was made before videos; run `searchcore migrate --library "
                                   "{library}` once to add the video fields, then ingest again",
                                   "图库 {library} 建于支持视频之前；请先运行一次 `searchcore migrate --library "
                                   "{library}` 添加视频字段，再重新导入"),
    "record_video_not_in_folder": ("not a folder",
                                   "不在文件夹中：只有文件夹里的视频才能导入"),

    # Models
    "model_unknown": ("model {name!r} is neither an official model ({models}) nor a checkpoint file",
                      "模型 {name!r} 既不是官方模型（{models}），也不是检查点文件"),
    "model_load_failed": ("could not load model {name!r}: {reason}",
                          "无法加载模型 {name!r}：{reason}"),
    "model_weights_missing": ("{name} weights are not in {model_dir} and could not be downloaded ({reason}); put "
                              "{file} there or set SEARCHCORE_MODEL_DIR",
                              "{model_dir} 中没有 {name} 的权重，也无法下载（{reason}）；请把 {file} 放到那里，或设置"
                              " SEARCHCORE_MODEL_DIR"),
    "checkpoint_no_state_dict": ("{path} is not a Chinese-CLIP checkpoint (no 'state_dict' in it)",
                                 "{path} 不是 Chinese-CLIP 检查点（其中没有 'state_dict'）"),
    "checkpoint_fine_tuned": ("{path} is a fine-tuned checkpoint: set --vision-model, --text-model and --resolution "
                              "(e.g. ViT-B-16, RoBERTa-wwm-ext-base-chinese, 224)",
                              "{path} 是微调过的检查点：请设置 --vision-model、--text-model 和 --resolution（例如 "
                              "ViT-B-16、RoBERTa-wwm-ext-base-chinese、224）"),
    "vocab_missing": ("cn_clip's clip/vocab.txt was not found; reinstall it with `pip install cn_clip`",
                      "找不到 cn_clip 的 clip/vocab.txt；请用 `pip install cn_clip` 重新安装"),
    # Libraries
    "library_name_invalid": ("invalid library name {name!r}: use a letter then up to 63 letters, digits or "
                             "underscores",
                             "图库名称 {name!r} 无效：以字母开头，后接最多 63 个字母、数字或下划线"),
    "library_name_reserved": ("invalid library name {name!r}: a name may not end in {suffix}",
                              "图库名称 {name!r} 无效：名称不能以 {suffix} 结尾"),
    "library_missing": ("library {library!r} does not exist",
                        "图库 {library} 不存在"),
    "library_missing_ingest": ("library {library!r} does not exist; ingest into it first",
                               "图库 {library} 不存在：请先向其中导入图片"),
    "library_empty": ("library {library!r} does not exist or is empty; ingest images into it first",
                      "图库 {library} 不存在或为空：请先在“建库”中导入图片"),
    "library_other_model": ("library {library!r} was built with model {model} ({dim}-d), not {encoder}; start with "
                            "--model set to that model",
                            "图库 {library} 是用模型 {model}（{dim} 维）建的，不是 {encoder}；请用 --model 指定该模型"
                            "启动"),
    "library_model_unavailable": ("library {library!r} was built with model {model} ({dim}-d), which cannot be "
                                  "loaded: {reason}. Put that model back, or move the library to a model you have "
                                  "with `searchcore reindex --library {library} --model M`",
                                  "图库 {library} 是用模型 {model}（{dim} 维）建的，该模型无法加载：{reason}。请放回该"
                                  "模型，或用 searchcore reindex --library {library} --model M 把图库换成现有的模型"),
    "reindex_check_failed": ("the reindex of library {library!r} to {model} was not switched: after encoding, "
                             "{missing} images had no vector in the new collection and {orphans} vectors no image "
                             "({bad} could not be decoded again; the others were added or removed meanwhile). The "
                             "library still answers with its old model; run `searchcore check --library {library}`, "
                             "then the reindex again, which keeps what it encoded",
                             "图库 {library} 换用 {model} 的重建没有切换：编码后新集合中有 {missing} 张图片没有向量，"
                             "{orphans} 个向量没有图片（其中 {bad} 张无法再次解码，其余是期间新增或删除的）。"
                             "图库仍使用原模型；请运行 searchcore check --library {library}，"
                             "再重新运行重建（已编码的会保留）"),
    "reindex_none": ("library {library!r} has no reindex under way, and none ran since the server started",
                     "图库 {library} 没有正在进行的重建，服务启动以来也没有运行过"),
    "reindex_running": ("library {library!r} is being reindexed to {model} already: {line}",
                        "图库 {library} 已在换用 {model} 重建：{line}"),
    "library_model_mismatch": ("library {library!r} was built with model {model} ({dim}-d); it cannot be used with "
                               "{wanted_model} ({wanted_dim}-d). Use that model or another library name",
                               "图库 {library} 是用模型 {model}（{dim} 维）建的，不能与 {wanted_model}（{wanted_dim} "
                               "维）一起使用。请使用该模型，或换一个图库名称"),
    "library_needs_migrate": ("library {library!r} was made before folder and date filters; run `searchcore migrate "
                              "--library {library}` once to add them (its images stay as they are)",
                              "图库 {library} 创建于筛选功能之前：请运行一次 searchcore migrate --library {library}（"
                              "图片和向量保持不变）"),
    "library_needs_migrate_videos": ("library {library!r} was made before videos; run `searchcore migrate --library "
                                     "{library}` once to add the video fields (its images stay as they are)",
                                     "图库 {library} 创建于视频功能之前：请运行一次 searchcore migrate --library "
                                     "{library}（图片和向量保持不变）"),
    "library_locked": ("library file {path} is open in another process; stop it or use a Milvus server URI",
                       "图库文件 {path} 已被另一个进程打开；请停止该进程，或使用 Milvus 服务器地址"),
    "collection_foreign": ("collection {collection} was not made by searchcore; refusing to use it",
                           "集合 {collection} 不是 searchcore 创建的，拒绝使用"),
    "image_not_in_library": ("image {image_id} is not in library {library!r}",
                             "图片 {image_id} 不在图库 {library} 中"),
    "video_not_in_library": ("video {video_id} is not in library {library!r}",
                             "视频 {video_id} 不在图库 {library} 中"),
    # Queries
    "query_not_text": ("the query must be text",
                       "搜索内容必须是文字"),
    "query_empty": ("the query is empty: type a description, e.g. 红色的圆形",
                    "搜索内容为空：请输入描述，例如 红色的圆形"),
    "top_k_range": ("top_k must be from 1 to {max_top_k}, got {top_k}",
                    "结果数必须是 1 到 {max_top_k} 之间的整数，收到 {top_k}"),
    "top_k_not_whole": ("top_k must be a whole number from 1 to {max_top_k}, got {value!r}",
                        "结果数必须是 1 到 {max_top_k} 之间的整数，收到 {value!r}"),
    "offset_range": ("offset + top_k must be at most {max_top_k} (offset {offset}, top_k {top_k})",
                     "翻页超出范围：最多显示 {max_top_k} 个结果（起点 {offset}，结果数 {top_k}）"),
    "offset_not_whole": ("offset must be a whole number from 0, got {value!r}",
                         "翻页起点必须是不小于 0 的整数，收到 {value!r}"),
    "image_id_invalid": ("image id must be a whole number from 0 to 2^63-1, got {value!r}",
                         "图片 ID 必须是 0 到 2^63-1 之间的整数，收到 {value!r}"),
    "mode_invalid": ("mode must be one of {modes}, got {value!r}",
                     "搜索方式必须是 semantic（语义）、keyword（关键词）或 hybrid（混合），收到 {value!r}"),
    "full_text_missing": ("{mode} search needs Milvus's full-text index, which this vector store lacks",
                          "{mode} 搜索需要 Milvus 的全文索引，而当前向量存储没有"),
    "full_text_unsupported": ("keyword and hybrid search need Milvus {needed} or newer for BM25 full-text search; "
                              "the server at {uri} runs {version}. Semantic search works as before (--mode semantic)",
                              "关键词和混合搜索需要支持 BM25 全文检索的 Milvus {needed} 或更新版本；{uri} 上的服务器"
                              "版本为 {version}。语义搜索不受影响（--mode semantic）"),
    "min_similarity_not_number": ("min_similarity must be a number from -1 to 1, got {value!r}",
                                  "最低相似度必须是 -1 到 1 之间的数，收到 {value!r}"),
    "min_similarity_range": ("min_similarity must be from -1 to 1, got {value}",
                             "最低相似度必须是 -1 到 1 之间的数，收到 {value}"),
    "exclude_not_text": ("exclude must be text", "要排除的词必须是文字"),
    "query_only_excludes": ("the query only excludes: say what to find as well, e.g. 红色 -圆形",
                            "描述里只有要排除的词：请同时写上要找的内容，例如 红色 -圆形"),
    "phrase_needs_text_index": ("quoted words ({phrases}) must appear in a picture's words, but library {library} "
                                "has no text index: ingest it with --ocr, or search without the quotes",
                                "引号里的词（{phrases}）必须出现在图片的文字里，但图库 {library} 没有文字索引："
                                "请用 --ocr 入库，或去掉引号再搜索"),
    "time_words_disjoint": ("the time words of the query name periods that do not overlap ({periods})",
                            "描述里的时间词指的时间段互不重叠（{periods}）"),
    "cutoff_invalid": ("cutoff must be auto (or empty for none), got {value!r}",
                       "cutoff 只能是 auto（或留空表示不截断），收到 {value!r}"),
    "sort_invalid": ("sort must be one of {sorts}, got {value!r}",
                     "排序必须是 {sorts} 之一，收到 {value!r}"),
    "range_unsatisfiable": ("the byte range {range!r} cannot be served from a file of {size} bytes",
                            "无法从 {size} 字节的文件中提供字节范围 {range!r}"),
    "query_image_unusable": ("the query image cannot be used: {reason}",
                             "无法使用这张查询图片：{reason}"),
    "threshold_invalid": ("threshold must be a number greater than 0 and at most 1, got {value!r}",
                          "相似度阈值必须是大于 0、不超过 1 的数，收到 {value!r}"),
    "since_invalid": ("since must be a date as YYYY-MM-DD, got {value!r}",
                      "起始日期必须写成 YYYY-MM-DD，收到 {value!r}"),
    "until_invalid": ("until must be a date as YYYY-MM-DD, got {value!r}",
                      "截止日期必须写成 YYYY-MM-DD，收到 {value!r}"),
    "dates_reversed": ("since ({since}) is after until ({until})",
                       "起始日期（{since}）晚于截止日期（{until}）"),
    "frame_interval_invalid": ("the frame interval must be a number of seconds from {low} to {high}, not {value!r}",
                               "抽帧间隔必须是 {low} 到 {high} 之间的秒数，收到 {value!r}"),
    "media_invalid": ("media must be image, video or all, not {value!r}",
                      "媒体类型必须是 image（图片）、video（视频）或 all（全部），收到 {value!r}"),
    "folder_not_text": ("folder must be text, e.g. 2024/旅行",
                        "文件夹必须是文字，例如 2024/旅行"),
    "folder_too_long": ("folder is longer than {limit} characters",
                        "文件夹路径超过 {limit} 个字符"),
    "folder_bad_chars": ("folder contains characters a path cannot hold here: {chars}",
                         "文件夹中含有路径不能使用的字符：{chars}"),
    "folder_not_relative": ("folder must be a relative path inside the library's folder, got {value!r}",
                            "文件夹必须是图库文件夹内的相对路径，收到 {value!r}"),
    # Datasets and folders
    "path_missing": ("{path} does not exist",
                     "{path} 不存在"),
    "dataset_is_file": ("{path} is a file; give a dataset folder, a folder of images, or --features FILE",
                        "{path} 是一个文件；请给出数据集文件夹、图片文件夹或 --features 文件"),
    "folder_no_images": ("{path} holds no images ({suffixes}) and no Chinese-CLIP split",
                         "{path} 中没有图片（{suffixes}），也没有 Chinese-CLIP 数据划分"),
    "split_given_no_split": ("{path} holds no Chinese-CLIP split (no *{tsv}); drop --split to ingest it as a folder "
                             "of images",
                             "{path} 中没有 Chinese-CLIP 数据划分（没有 *{tsv}）；去掉 --split 即可按图片文件夹导入"),
    "dataset_several_splits": ("{path} holds several splits ({splits}); choose one with --split",
                               "{path} 中有多个数据划分（{splits}）；请用 --split 选择一个"),
    "dataset_no_split": ("{path} holds no Chinese-CLIP split (no {{split}}{tsv}, lmdb/{{split}}/imgs or "
                         "{{split}}{features})",
                         "{path} 中没有 Chinese-CLIP 数据划分（没有 {{split}}{tsv}、lmdb/{{split}}/imgs 或 "
                         "{{split}}{features}）"),
    "split_not_found": ("split {split!r} not found in {path}; found: {found}",
                        "{path} 中找不到数据划分 {split!r}；找到的有：{found}"),
    "dataset_not_recognised": ("{path} is not a Chinese-CLIP dataset folder or a {{split}}{tsv} file",
                               "{path} 不是 Chinese-CLIP 数据集文件夹，也不是 {{split}}{tsv} 文件"),
    "feature_file_missing": ("feature file {path} does not exist",
                             "特征文件 {path} 不存在"),
    "split_file_missing": ("{name} is missing from {path}: a Chinese-CLIP split pairs {split}{tsv} with {name}",
                           "{path} 中缺少 {name}：Chinese-CLIP 数据划分的 {split}{tsv} 需要配有 {name}"),
    "feature_dim_mismatch": ("{path} holds {dim}-dimensional features, but the model {model} makes {model_dim}: "
                             "extract them with this model",
                             "{path} 中的特征是 {dim} 维的，而模型 {model} 生成 {model_dim} 维：请用这个模型提取特征"),
    "lmdb_unopenable": ("cannot open LMDB {path}: {reason}",
                        "无法打开 LMDB {path}：{reason}"),
    "split_no_images": ("split {split!r} of {path} has no images (only features) to extract from",
                        "{path} 的数据划分 {split!r} 没有可提取的图片（只有特征）"),
    "mass_removal_empty": ("refusing to remove {gone} of the {recorded} pictures recorded in {root}: the folder is "
                           "empty: is the drive mounted? Nothing was removed. If they really are gone, run again "
                           "with --sync --allow-mass-removal",
                           "拒绝删除：{root} 中记录的 {recorded} 张图片有 {gone} 张不见了，而文件夹是空的：硬盘或网络"
                           "盘是否已挂载？没有删除任何图片。如果它们确实已被删除，请加上 --sync --allow-mass-removal "
                           "再运行"),
    "mass_removal_all": ("refusing to remove {gone} of the {recorded} pictures recorded in {root}: none of its "
                         "recorded files is there any more: is this the right folder? Nothing was removed. If they "
                         "really are gone, run again with --sync --allow-mass-removal",
                         "拒绝删除：{root} 中记录的 {recorded} 张图片全都不见了：文件夹是否选对了？没有删除任何图片。"
                         "如果它们确实已被删除，请加上 --sync --allow-mass-removal 再运行"),
    "mass_removal_share": ("refusing to remove {gone} of the {recorded} pictures recorded in {root}: that is more "
                           "than {share:.0%} of them at once. Nothing was removed. If they really are gone, run "
                           "again with --sync --allow-mass-removal",
                           "拒绝删除：{root} 中记录的 {recorded} 张图片有 {gone} 张不见了，一次超过了 {share:.0%}。没"
                           "有删除任何图片。如果它们确实已被删除，请加上 --sync --allow-mass-removal 再运行"),
    "relocate_which_folder": ("library {library!r} has files from {count} folders; say which one moved with --from "
                              "({folders})",
                              "图库 {library} 的文件来自 {count} 个文件夹；请用 --from 指出移动的是哪一个（"
                              "{folders}）"),
    "relocate_not_a_root": ("library {library!r} has no files from {old}; its folders: {folders}",
                            "图库 {library} 中没有来自 {old} 的文件；它的文件夹有：{folders}"),
    "relocate_wrong_folder": ("none of the files recorded under {old} is in {path}: is it the right folder?",
                              "{old} 下记录的文件在 {path} 中一个都没有：文件夹是否选对了？"),
    "original_changed": ("the file of image {image_id} ({path}) has changed since it was indexed; ingest its folder "
                         "again to index the new picture",
                         "图片 {image_id} 的文件（{path}）在建立索引后已被修改；请重新导入它所在的文件夹，以索引新的"
                         "图片"),
    "original_missing": ("the file of image {image_id} ({path}) is not in its folder any more; if the folder moved "
                         "to another disk, run searchcore relocate --library LIBRARY NEW_FOLDER",
                         "图片 {image_id} 的文件（{path}）已不在原文件夹中；如果文件夹移到了另一个磁盘，请运行 "
                         "searchcore relocate --library LIBRARY NEW_FOLDER"),
    "video_file_changed": ("the file of video {video_id} ({path}) has changed since it was indexed; ingest its folder "
                           "again to index the new video",
                           "视频 {video_id} 的文件（{path}）在建立索引后已被修改；请重新导入它所在的文件夹"),
    "video_file_missing": ("the file of video {video_id} ({path}) is not in its folder any more; if the folder moved "
                           "to another disk, run searchcore relocate --library LIBRARY NEW_FOLDER",
                           "视频 {video_id} 的文件（{path}）已不在原文件夹中；如果文件夹移到了另一个磁盘，请运行 "
                           "searchcore relocate --library LIBRARY NEW_FOLDER"),
    "sync_needs_folder": ("--sync applies to a folder of images, not to a Chinese-CLIP split or feature file",
                          "--sync 只适用于图片文件夹，不适用于 Chinese-CLIP 数据划分或特征文件"),
    "watch_not_folder": ("cannot watch {path}: it is not a folder",
                         "无法监视 {path}：它不是文件夹"),
    "watch_failed": ("cannot watch {path}: {reason}",
                     "无法监视 {path}：{reason}"),
    # Evaluation
    "no_annotated_queries": ("no annotated queries to evaluate",
                             "没有带标注的查询可供评测"),
    "texts_bad_line": ("{file}:{line}: {reason} ({count} bad lines in all)",
                       "{file}:{line}：{reason}（共 {count} 行有误）"),
    "texts_empty": ("{path} holds no texts",
                    "{path} 中没有文本"),
    "eval_library_extra": ("library {library!r} holds {extra} images that are not in split {split!r}; Chinese-CLIP "
                           "ranks among the split's images only, so evaluate a library that holds just that split, "
                           "e.g. --library {split}_eval (an empty library is filled from the split first)",
                           "图库 {library} 中有 {extra} 张图片不属于数据划分 {split!r}；Chinese-CLIP 只在该划分的图片"
                           "中排序，请评测只含该划分的图库，例如 --library {split}_eval（空图库会先用该划分填充）"),
    "eval_library_extra_lacking": ("library {library!r} holds {extra} images that are not in split {split!r} and "
                                   "lacks {missing} of the split's {wanted}; Chinese-CLIP ranks among the split's "
                                   "images only, so evaluate a library that holds just that split, e.g. --library "
                                   "{split}_eval (an empty library is filled from the split first)",
                                   "图库 {library} 中有 {extra} 张图片不属于数据划分 {split!r}，且缺少该划分 "
                                   "{wanted} 张中的 {missing} 张；Chinese-CLIP 只在该划分的图片中排序，请评测只含该划"
                                   "分的图库，例如 --library {split}_eval（空图库会先用该划分填充）"),
    "eval_library_lacking": ("library {library!r} lacks {missing} of the {wanted} images of split {split!r}; run "
                             "`searchcore ingest {path} --split {split} --library {library}` first",
                             "图库 {library} 缺少数据划分 {split!r} 的 {wanted} 张图片中的 {missing} 张；请先运行 "
                             "`searchcore ingest {path} --split {split} --library {library}`"),
    "eval_library_too_small": ("library {library!r} holds {count} images, fewer than top-k {top_k}; Chinese-CLIP's "
                               "scorer needs 10 distinct images per text",
                               "图库 {library} 只有 {count} 张图片，少于 top-k {top_k}；Chinese-CLIP 的评分程序每条文"
                               "本需要 10 张不同的图片"),
    # Images
    "image_empty": ("image data is empty (0 bytes)",
                    "图片数据为空（0 字节）"),
    "image_too_big": ("image is {size_mb:.1f} MB, over the store's limit of {limit_mb:.1f} MB",
                      "图片有 {size_mb:.1f} MB，超过了存储上限 {limit_mb:.1f} MB"),
    "image_too_big_stored": ("image is {size_mb:.1f} MB once made upright and browser-ready, over the store's limit "
                             "of {limit_mb:.1f} MB",
                             "图片转正并转为浏览器可显示的格式后有 {size_mb:.1f} MB，超过了存储上限 {limit_mb:.1f} MB"),
    "image_too_many_pixels": ("image claims {width}x{height} pixels, over the limit of {limit} (possible "
                              "decompression bomb)",
                              "图片声称有 {width}x{height} 像素，超过了 {limit} 的上限（可能是解压炸弹）"),
    "image_too_large_to_decode": ("image is too large to decode safely ({reason})",
                                  "图片太大，无法安全解码（{reason}）"),
    "image_unknown_format": ("data is not an image of a known format",
                             "数据不是已知格式的图片"),
    "image_corrupt": ("image is corrupt or truncated ({reason})",
                      "图片已损坏或不完整（{reason}）"),
    # Backends
    "image_db_unopenable": ("image database {db} cannot be opened: {reason}",
                            "无法打开图片数据库 {db}：{reason}"),
    "image_db_unavailable": ("image database {db} is unavailable: {reason}",
                             "图片数据库 {db} 不可用：{reason}"),
    "image_db_failed": ("image database {db} failed: {reason}",
                        "图片数据库 {db} 出错：{reason}"),
    "vector_store_failed": ("vector store {uri} failed to {action}: {reason}",
                            "向量存储 {uri} 执行“{action}”时出错：{reason}"),
    "lite_unopenable": ("cannot open Milvus Lite file {path}: {reason}",
                        "无法打开 Milvus Lite 文件 {path}：{reason}"),
    "milvus_unavailable": ("Milvus server {uri} is unavailable (retried for {timeout:g}s): {reason}; check "
                           "SEARCHCORE_MILVUS_URI and that the server is running",
                           "Milvus 服务器 {uri} 不可用（已重试 {timeout:g} 秒）：{reason}；请检查 "
                           "SEARCHCORE_MILVUS_URI，并确认服务器正在运行"),
    # Distributed ingest
    "ray_needs_server": ("ingest-ray writes from several worker processes, and a Milvus Lite file is held by one "
                         "process: set SEARCHCORE_MILVUS_URI to a Milvus server (http://host:19530), or use "
                         "`searchcore ingest`",
                         "ingest-ray 由多个工作进程写入，而 Milvus Lite 文件只能被一个进程打开：请把 "
                         "SEARCHCORE_MILVUS_URI 设为 Milvus 服务器（http://host:19530），或使用 `searchcore ingest`"),
    "ray_missing": ("ingest-ray needs Ray Data: pip install 'ray[data]'",
                    "ingest-ray 需要 Ray Data：pip install 'ray[data]'"),
    "ray_no_gpu": ("device cuda was asked for, but the Ray cluster has no GPU; use --device cpu or auto",
                   "指定了 cuda 设备，但 Ray 集群没有 GPU；请使用 --device cpu 或 auto"),
    "ray_tsv_missing": ("{path} is missing: ingest-ray reads tsv splits; use `searchcore ingest` for LMDB and "
                        "feature files",
                        "缺少 {path}：ingest-ray 只读取 tsv 数据划分；LMDB 和特征文件请用 `searchcore ingest`"),
    "ray_cluster_unreachable": ("cannot join the Ray cluster at {address}: {reason}. If `ray status` shows it "
                                "running, it checks a token (Ray >= 2.59 clusters started with `ray start`): set "
                                "RAY_AUTH_MODE=token here too; the token is read from ~/.ray/auth_token or "
                                "RAY_AUTH_TOKEN",
                                "无法加入 {address} 的 Ray 集群：{reason}。如果 `ray status` 显示它在运行，说明它会检"
                                "查令牌（用 `ray start` 启动的 Ray >= 2.59 集群）：请在这里也设置 "
                                "RAY_AUTH_MODE=token；令牌从 ~/.ray/auth_token 或 RAY_AUTH_TOKEN 读取"),
    "ray_node_not_started": ("the local Ray node did not start in {tries} tries: {reason}",
                             "本地 Ray 节点尝试 {tries} 次仍未启动：{reason}"),
    "ray_ingest_failed": ("Ray ingest failed: {error}: {reason}",
                          "Ray 导入失败：{error}：{reason}"),
    "bulk_writer_missing": ("bulk insert needs pymilvus[bulk_writer]: {reason}",
                            "批量导入需要 pymilvus[bulk_writer]：{reason}"),
    "bulk_insert_failed": ("Milvus bulk insert into {collection} failed: {reason}",
                           "Milvus 批量导入 {collection} 失败：{reason}"),
    "bulk_insert_incomplete": ("Milvus bulk insert of {files} did not complete ({state}: {reason}); the server must "
                               "be able to read these paths",
                               "Milvus 批量导入 {files} 未完成（{state}：{reason}）；服务器必须能读取这些路径"),
    # Records skipped by a reader (sources/, evaluate, uploads, maintenance, reindex)
    "file_unreadable": ("cannot read file ({reason})",
                        "无法读取文件（{reason}）"),
    "file_empty": ("file is empty (0 bytes)",
                   "文件为空（0 字节）"),
    "image_id_not_integer": ("image id {key!r} is not an integer",
                             "图片 ID {key!r} 不是整数"),
    "image_id_bad": ("image id {image_id}: {reason}",
                     "图片 ID {image_id}：{reason}"),
    "base64_invalid": ("invalid base64 ({reason})",
                       "base64 编码无效（{reason}）"),
    "tsv_no_tab": ("no tab between the image id and the base64 image",
                   "图片 ID 和 base64 图片之间没有制表符"),
    "tsv_image_bad": ("image id {image_id}: line {tsv_line} of {file} has {reason}",
                      "图片 ID {image_id}：{file} 第 {tsv_line} 行有问题：{reason}"),
    "line_not_utf8": ("line is not valid UTF-8",
                      "该行不是有效的 UTF-8"),
    "text_entry_invalid": ("not a text entry ({reason})",
                           "不是有效的文本条目（{reason}）"),
    "feature_entry_invalid": ("not a feature entry ({reason})",
                              "不是有效的特征条目（{reason}）"),
    "feature_not_finite": ("feature is not a finite vector",
                           "特征不是有限值向量"),
    "record_without_data": ("no image data",
                            "没有图片数据"),
    "stored_image_bad": ("image {image_id}: {reason}",
                         "图片 {image_id}：{reason}"),
    "not_image_name": ("not an image file name ({suffixes})",
                       "不是图片文件名（{suffixes}）"),
    "video_file_empty": ("video file is empty (0 bytes)",
                         "视频文件为空（0 字节）"),
    "video_unreadable": ("video cannot be read ({reason})",
                         "无法读取视频（{reason}）"),
    "video_unknown_format": ("file is not a video of a known format ({reason})",
                             "文件不是已知格式的视频（{reason}）"),
    "video_no_streams": ("file has no readable streams: not a video, or a corrupt one",
                         "文件中没有可读的流：不是视频，或视频已损坏"),
    "video_no_video_stream": ("file has no video stream ({kinds} only)",
                              "文件中没有视频流（只有 {kinds}）"),
    "video_too_many_pixels": ("video claims {width}x{height} pixels a frame, over the limit of {limit}",
                              "视频声称每帧有 {width}x{height} 像素，超过了 {limit} 的上限"),
    "video_corrupt": ("video is corrupt ({reason})",
                      "视频已损坏（{reason}）"),
    "video_truncated": ("video is truncated or corrupt: its frames stop at {last:.1f} s of the {end:.1f} s its "
                        "container declares",
                        "视频不完整或已损坏：画面在 {last:.1f} 秒处中断，而容器声明时长为 {end:.1f} 秒"),
    "video_no_frame": ("video has no frame that decodes",
                       "视频中没有能解码的画面"),
    "model_weights_not_here": ("its weights are not here",
                               "它的权重不在这里"),
    "model_weights_unrecorded": ("no weights file of it is recorded",
                                 "没有记录它的权重文件"),
    "model_file_other_weights": ("{file} now holds other weights ({encoder})",
                                 "{file} 现在存放的是另一个模型的权重（{encoder}）"),
    "watch_folder_gone": ("{folder} is gone, empty or holds none of its pictures (is the drive mounted?); nothing "
                          "was removed; waiting for it",
                          "{folder} 不见了、为空或其中没有原来的图片（硬盘挂载了吗？）；没有删除任何内容；正在等待它"
                          "恢复"),
    "watch_rescan_failed": ("unexpected {error}: {reason}",
                            "意外错误 {error}：{reason}"),

    # Front ends
    "usage_reindex_model": ("reindex needs --model M: the model (name or checkpoint) to move the library to",
                            "reindex 需要 --model M：图库要换用的模型（名称或检查点）"),
    "usage_query_or_image": ("give either a text query or --image FILE",
                             "请给出文字查询或 --image 图片文件，二者选一"),
    "usage_image_semantic_only": ("--mode keyword and hybrid search by words; --image searches by look (semantic) "
                                  "only",
                                  "--mode keyword 和 hybrid 按文字检索；--image 只按外观（语义）检索"),
    "image_file_unreadable": ("cannot read {path}: {reason}",
                              "无法读取 {path}：{reason}"),
    "watch_needs_server": ("searchcore watch needs a Milvus server URI (--milvus-uri http://host:19530); with a Lite "
                           "file run python app.py --watch {path}, since the app and a command cannot both open the "
                           "Lite file",
                           "searchcore watch 需要 Milvus 服务器地址（--milvus-uri http://host:19530）；使用 Lite 文件"
                           "时请运行 python app.py --watch {path}，因为应用和命令不能同时打开 Lite 文件"),
    "upload_not_image": ("{name} is not an image this app can read: {reason}",
                         "{name} 不是本应用能读取的图片：{reason}"),
    "unnamed_upload_not_image": ("the upload is not an image this app can read: {reason}",
                                 "上传的文件不是本应用能读取的图片：{reason}"),
    "upload_none": ("choose some images to upload first",
                    "请先选择要上传的图片"),
    "upload_too_many": ("{count} files is over the limit of {limit} per upload",
                        "{count} 个文件超过了每次上传 {limit} 个的上限"),
    "upload_too_big": ("{name} is over the upload limit of {limit_mb} MB",
                       "{name} 超过了 {limit_mb} MB 的上传上限"),
    "upload_unreadable": ("cannot read the upload {name}: {reason}",
                          "无法读取上传的文件 {name}：{reason}"),
    "image_folder_first": ("enter the image folder's path first",
                           "请先填写图片文件夹的路径"),
    "dataset_folder_first": ("enter the dataset folder's path first",
                             "请先填写数据集文件夹的路径"),
    # Access (web/api.py): refusals of the API's access checks, answered as {"detail": English}
    "writes_disabled": ("write actions are disabled: {reason}",
                        "写操作已停用：{reason}"),
    "video_link_expired": ("this video link has expired or is not for this video; search again",
                           "这个视频链接已过期，或不是这个视频的链接；请重新搜索"),
    "sign_in_required": ("sign in with one of the --auth users (HTTP basic auth)",
                         "请用 --auth 设置的用户之一登录（HTTP 基本认证）"),
}


# (kind, field) whose value is an error now but was its English text in the API's JSON before: it stays text there
TEXT_FIELDS = {("upload_not_image", "reason"), ("unnamed_upload_not_image", "reason"),
               ("library_model_unavailable", "reason"), ("texts_bad_line", "reason")}


class SearchcoreError(Exception):
    """Base class: one kind of error (a key of MESSAGES) and its fields; the CLI prints it and exits 1."""

    def __init__(self, kind: str, **params: Any) -> None:
        if kind not in MESSAGES:
            raise KeyError(f"unknown error kind {kind!r}: add it to searchcore.errors.MESSAGES")
        self.kind = kind
        self.params = params
        super().__init__(self.render("en"))

    def render(self, lang: str = "en") -> str:
        """The message in a language of LANGUAGES ("zh" or else English), its fields filled in."""
        english, chinese = MESSAGES[self.kind]
        values = {k: v.render(lang) if isinstance(v, SearchcoreError) else v for k, v in self.params.items()}
        return (chinese if lang == "zh" else english).format(**values)

    def to_json(self) -> dict[str, Any]:
        """The kind and its fields, as the API returns them beside the English message (a field that was text
        before its value became a kind stays its English text there: TEXT_FIELDS)."""
        return {"kind": self.kind, "params": {k: str(v) if (self.kind, k) in TEXT_FIELDS else _jsonable(v)
                                              for k, v in self.params.items()}}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Any:
        """The error to_json gave, as an instance of cls (an error in its fields comes back as one too)."""
        params = {k: cls.from_json(v) if isinstance(v, dict) and v.keys() == {"kind", "params"} else v
                  for k, v in value["params"].items()}
        return cls(value["kind"], **params)

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray and multiprocessing pickle errors raised in workers: rebuilt from the kind and fields, not the
        # message, and without calling a subclass's own constructor; its other attributes come back as state.
        return _rebuild, (type(self), self.kind, self.params), self.__dict__


def _rebuild(cls: type[SearchcoreError], kind: str, params: dict[str, Any]) -> SearchcoreError:
    error = cls.__new__(cls)
    SearchcoreError.__init__(error, kind, **params)
    return error


def _jsonable(value: Any) -> Any:
    if isinstance(value, SearchcoreError):
        return value.to_json()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, PurePath):
        return str(value)
    return repr(value)


class RecordError(SearchcoreError):
    """Why one record (a dataset line, a folder file, an upload) was skipped: BadRecord.reason and Record.error
    hold one, so a report reads in the user's language (render) and its kind can be counted. Two are equal when
    they say the same (kind and fields), as the records that hold them are."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordError):
            return NotImplemented
        return (self.kind, self.params) == (other.kind, other.params)

    def __hash__(self) -> int:
        return hash(self.kind)


class ConfigError(SearchcoreError):
    """A setting has a value the engine cannot use."""


class ModelError(SearchcoreError):
    """The model could not be found or loaded."""


class LibraryError(SearchcoreError):
    """A library name is invalid, missing, or belongs to another model."""


class LibraryLockedError(LibraryError):
    """An embedded Milvus Lite file is held by another process."""


class DatasetError(SearchcoreError):
    """A dataset folder, split or file cannot be read."""


class QueryError(SearchcoreError):
    """A search query or its parameters are invalid."""


class BackendUnavailableError(SearchcoreError):
    """Milvus or the image database cannot be reached right now."""


class UnsupportedError(SearchcoreError):
    """The backend in use cannot do what was asked (a Milvus server too old for full-text search)."""


class AccessError(SearchcoreError):
    """A request the app's access settings refuse: writes disabled, no or a wrong sign-in, an expired video link."""


class MassRemovalError(DatasetError):
    """A --sync run would remove all of a folder's pictures, or more than a share of them, at once: what an
    unmounted drive looks like. Nothing was removed."""

    def __init__(self, root: str, gone: int, recorded: int, found: int, share: float) -> None:
        self.root, self.gone, self.recorded, self.found, self.share = root, gone, recorded, found, share
        super().__init__("mass_removal_empty" if found == 0 else "mass_removal_all" if gone == recorded
                         else "mass_removal_share", root=root, gone=gone, recorded=recorded, share=share)


class OriginalUnavailableError(QueryError):
    """A folder picture's file is gone (changed=False) or no longer the picture indexed (changed=True)."""

    def __init__(self, image_id: int, path: str, changed: bool) -> None:
        self.image_id, self.path, self.changed = image_id, path, changed
        super().__init__("original_changed" if changed else "original_missing", image_id=image_id, path=path)


class VideoUnavailableError(QueryError):
    """A video's file is gone (changed=False) or no longer the video indexed (changed=True)."""

    def __init__(self, video_id: int, path: str, changed: bool) -> None:
        self.video_id, self.path, self.changed = video_id, path, changed
        super().__init__("video_file_changed" if changed else "video_file_missing", video_id=video_id, path=path)


class ImageDecodeError(RecordError, ValueError):
    """The bytes are not an image this engine can use; the kind says why."""


class VideoDecodeError(RecordError, ValueError):
    """The file is not a video this engine can use; the kind says why."""


class UploadRefused(QueryError):
    """An upload the limits refuse; its kind names which limit ("upload_too_big", ...) and params its values."""


class UsageError(SearchcoreError):
    """Arguments that do not fit together; exits 2 like argparse does."""


class SeedError(Exception):
    """An answer of the seed-compatible API's error shape: {"status": false, "msg": ...}. Not a kind: that API
    answers with the message alone, as the seed did (web/seed_api.py)."""

    def __init__(self, msg: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.msg, self.status, self.headers = msg, status, headers


class CacheError(RuntimeError):
    """A cached OpenVINO IR entry is missing, stale or corrupt. Not a kind: the cache rebuilds it, and no user
    sees it."""


class Int8CacheError(RuntimeError):
    """A cached int8 entry is missing, stale or corrupt. Not a kind: the cache rebuilds it, and no user sees it."""
