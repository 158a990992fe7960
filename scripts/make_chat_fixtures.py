"""Write test/fixtures/chat_templates.json: real models' chat templates rendered by Jinja2 the way
Hugging Face transformers' apply_chat_template renders them — the reference for renderChat
(src/runtime/chat.ts; test/chat-template.test.ts reads the file).

Regenerate with (Debian's python3-jinja2; transformers itself is not needed):

    git clone node_modules/node-llama-cpp/llama/gitRelease.bundle /tmp/lcpp
    /usr/bin/python3 scripts/make_chat_fixtures.py /tmp/lcpp

The templates are the published ones: most from llama.cpp's models/templates/ (which its
scripts/get_chat_template.py downloads from each model's tokenizer_config.json on the Hugging
Face Hub), ChatML and Mistral v0.2 from the strings in llama.cpp's
tests/test-chat-template.cpp, Zephyr from HuggingFaceH4/zephyr-7b-beta's tokenizer_config.json.

The Jinja environment is transformers' (utils/chat_template_utils.py, _compile_jinja_template):
an ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension,
raise_exception, a tojson filter over json.dumps(ensure_ascii=False), and strftime_now; the
variables are apply_chat_template's: messages, tools and documents (None), add_generation_prompt
and the special tokens. strftime_now is replaced by a fixed date so the fixture is deterministic
(the test passes the same function through renderChat's `extra`).
"""
import json
import os
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = {"%d %b %Y": "29 Nov 2026", "%Y-%m-%d": "2026-11-29", "%d %B %Y": "29 November 2026"}


class TemplateError(Exception):
    pass


def environment() -> jinja2.Environment:
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW[fmt]

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
MISTRAL_V02 = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
ZEPHYR = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"

# name, where the text comes from, the template (inline) or its file in llama.cpp's models/templates, bos, eos
TEMPLATES = [
    ("chatml", "teknium/OpenHermes-2.5-Mistral-7B (llama.cpp tests/test-chat-template.cpp)", CHATML, None, "", "<|im_end|>"),
    ("zephyr", "HuggingFaceH4/zephyr-7b-beta tokenizer_config.json", ZEPHYR, None, "<s>", "</s>"),
    ("mistral-v0.2", "mistralai/Mistral-7B-Instruct-v0.2 (llama.cpp tests/test-chat-template.cpp)", MISTRAL_V02, None, "<s>", "</s>"),
    ("llama-3.1", "meta-llama/Llama-3.1-8B-Instruct", None, "meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("llama-3.2", "meta-llama/Llama-3.2-3B-Instruct", None, "meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    ("gemma-2", "google/gemma-2-2b-it", None, "google-gemma-2-2b-it.jinja", "<bos>", "<eos>"),
    ("qwen-2.5", "Qwen/Qwen2.5-7B-Instruct", None, "Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>"),
    ("phi-3.5", "microsoft/Phi-3.5-mini-instruct", None, "microsoft-Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>"),
    ("mistral-nemo", "mistralai/Mistral-Nemo-Instruct-2407", None, "mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>"),
    ("smollm3", "HuggingFaceTB/SmolLM3-3B", None, "HuggingFaceTB-SmolLM3-3B.jinja", "", "<|im_end|>"),
    ("qwen-3", "Qwen/Qwen3-0.6B", None, "Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>"),
    ("deepseek-r1-distill-qwen", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", None, "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CONVERSATIONS = {
    "one-turn": [{"role": "user", "content": "Hello!"}],
    "system": [SYSTEM, {"role": "user", "content": "What is 2+2?"}],
    "multi-turn": [
        SYSTEM,
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "   Hello, how can I help?  "},
        {"role": "user", "content": "Tell me a joke.\nA short one, with \"quotes\" & <tags> — ünïcödé 🌳."},
    ],
    "ends-with-assistant": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}],
    "reasoning": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n\n4\n\n"},
        {"role": "user", "content": "\n\n  and 3+3?  \n"},
    ],
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city, e.g. \"Zürich\""}}, "required": ["city"]}}}]


def render(env, template, messages, add_generation_prompt, bos, eos, tools=None):
    try:
        out = env.from_string(template).render(messages=messages, tools=tools, documents=None, add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
        return {"expected": out}
    except TemplateError as e:
        return {"error": str(e)}


def main() -> None:
    lcpp = sys.argv[1]
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "test/fixtures/chat_templates.json"
    env = environment()
    fixtures = []
    for name, source, inline, file, bos, eos in TEMPLATES:
        template = inline
        if file is not None:
            with open(os.path.join(lcpp, "models", "templates", file), encoding="utf-8") as f:
                template = f.read()
        cases = []
        for conv, messages in CONVERSATIONS.items():
            for agp in (True, False):
                cases.append({"conversation": conv, "add_generation_prompt": agp, **render(env, template, messages, agp, bos, eos)})
        if "tools" in template:
            cases.append({"conversation": "system", "add_generation_prompt": True, "tools": True, **render(env, template, CONVERSATIONS["system"], True, bos, eos, TOOLS)})
        fixtures.append({"name": name, "source": source, "bos_token": bos, "eos_token": eos, "template": template, "cases": cases})
    doc = {
        "generator": "scripts/make_chat_fixtures.py (Jinja2 %s, transformers' apply_chat_template environment)" % jinja2.__version__,
        "strftime_now": FIXED_NOW,
        "conversations": CONVERSATIONS,
        "tools": TOOLS,
        "templates": fixtures,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {out}: {len(fixtures)} templates, {sum(len(t['cases']) for t in fixtures)} cases")


if __name__ == "__main__":
    main()
